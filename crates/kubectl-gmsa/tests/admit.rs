//! `kubectl gmsa admit`: the webhook's decisions offline, on the Kubernetes documentation's
//! Deployments and on every kind that carries pods, against `tests/data/state` (a copy of
//! the repository's `examples/state`: gmsa-webapp1, usable by default/default only).

#![allow(clippy::unwrap_used)] // tests may panic

mod support;

use std::path::Path;

use gmsa_core::canonical::to_go_json;
use serde_json::{json, Value};
use support::{copy_data, kubernetes_validate_strict, run, run_stdin};

/// The inlined contents of gmsa-webapp1, as the webhook writes them.
fn webapp1_contents() -> String {
    let text = std::fs::read_to_string(support::data("state/gmsa-webapp1.yaml")).unwrap();
    let resource: Value = serde_saphyr::from_str(&text).unwrap();
    to_go_json(&resource["credspec"])
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_data("state", dir.path());
    copy_data("with-creds.yaml", dir.path());
    copy_data("with-creds-per-container.yaml", dir.path());
    dir
}

fn yaml_file(dir: &Path, name: &str) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}

#[test]
fn the_documented_deployment_is_admitted_with_contents_inlined() {
    let dir = setup();
    let out = run(
        dir.path(),
        &["admit", "-f", "with-creds.yaml", "--state", "state"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Its pods are named with-creds-<hash>-<5 characters>: longer than a NetBIOS name, which
    // the webhook's validation warns of (the generated suffix is shown as xxxxx).
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    assert!(
        lines[0].starts_with(r#"warning: Deployment default/with-creds: GMSA pod host name "with-creds-xxxxx" has 16 characters"#),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], "admitted Deployment default/with-creds");
    let mut expected = yaml_file(dir.path(), "with-creds.yaml");
    expected["spec"]["template"]["spec"]["securityContext"]["windowsOptions"]
        ["gmsaCredentialSpec"] = json!(webapp1_contents());
    assert_eq!(out.docs(), [expected]);

    std::fs::write(dir.path().join("admitted.yaml"), &out.stdout).unwrap();
    kubernetes_validate_strict(&dir.path().join("admitted.yaml"));
}

#[test]
fn the_documented_per_container_deployment_names_a_spec_that_cannot_exist() {
    let dir = setup();
    let out = run(
        dir.path(),
        &[
            "admit",
            "-f",
            "with-creds-per-container.yaml",
            "--state",
            "state",
        ],
    );
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "denied Deployment default/with-creds: cred spec gmsa-Webapp1 does not exist (code 404)\n"
    );
    assert_eq!(out.stdout, "", "denied objects are left out");
}

#[test]
fn service_accounts_without_the_grant_are_denied() {
    let dir = setup();
    let text = std::fs::read_to_string(dir.path().join("with-creds.yaml"))
        .unwrap()
        .replace("namespace: default", "namespace: team-c");
    let out = run_stdin(
        dir.path(),
        &["admit", "-f", "-", "--state", "state"],
        text.as_bytes(),
    );
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "denied Deployment team-c/with-creds: service account \"default\" is not authorized to `use` GMSA cred spec \"gmsa-webapp1\" (code 403)\n"
    );
}

const MIXED: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: iis}
spec:
  containers:
  - name: iis
    image: iis
    securityContext: {windowsOptions: {gmsaCredentialSpecName: gmsa-webapp1}}
  initContainers:
  - name: setup
    image: setup
    securityContext: {windowsOptions: {gmsaCredentialSpecName: gmsa-webapp1}}
---
apiVersion: v1
kind: Pod
metadata: {name: wrong-sa, namespace: default}
spec:
  serviceAccountName: web
  securityContext: {windowsOptions: {gmsaCredentialSpecName: gmsa-webapp1}}
  containers: [{name: iis, image: iis}]
---
apiVersion: v1
kind: Pod
metadata: {name: forged}
spec:
  containers:
  - name: iis
    image: iis
    securityContext: {windowsOptions: {gmsaCredentialSpecName: gmsa-webapp1, gmsaCredentialSpec: '{"CmsPlugins":[]}'}}
---
apiVersion: v1
kind: List
items:
- apiVersion: batch/v1
  kind: CronJob
  metadata: {name: nightly}
  spec:
    schedule: "@daily"
    jobTemplate:
      spec:
        template:
          spec:
            restartPolicy: Never
            containers:
            - name: job
              image: job
              securityContext: {windowsOptions: {gmsaCredentialSpecName: gmsa-webapp1}}
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {name: db}
  spec:
    serviceName: db
    selector: {matchLabels: {app: db}}
    template:
      metadata: {labels: {app: db}}
      spec:
        containers: [{name: db, image: db}]
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings}
  data: {a: b}
"#;

#[test]
fn every_pod_carrier_in_a_multi_document_file() {
    let dir = setup();
    std::fs::write(dir.path().join("mixed.yaml"), MIXED).unwrap();
    let out = run(
        dir.path(),
        &[
            "admit",
            "-f",
            "mixed.yaml",
            "--state",
            "state",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let verdicts: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        verdicts,
        [
            "admitted Pod default/iis",
            "denied Pod default/wrong-sa: service account \"web\" is not authorized to `use` GMSA cred spec \"gmsa-webapp1\" (code 403)",
            "denied Pod default/forged: the GMSA cred spec contents for container \"iis\" does not match the contents of GMSA resource \"gmsa-webapp1\" (code 422)",
            "admitted CronJob default/nightly",
            "admitted StatefulSet default/db",
            "skipped ConfigMap settings: no pods to review",
        ]
    );
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Pod", "CronJob", "StatefulSet", "ConfigMap"]);
    let contents = json!(webapp1_contents());
    let pod = &items[0];
    assert_eq!(
        pod["spec"]["containers"][0]["securityContext"]["windowsOptions"]["gmsaCredentialSpec"],
        contents
    );
    assert_eq!(
        pod["spec"]["initContainers"][0]["securityContext"]["windowsOptions"]["gmsaCredentialSpec"],
        contents
    );
    assert!(
        pod["metadata"].get("namespace").is_none(),
        "objects are printed as given, plus the patch"
    );
    assert_eq!(
        items[1]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
            ["securityContext"]["windowsOptions"]["gmsaCredentialSpec"],
        contents
    );
    assert_eq!(
        items[2]["spec"]["template"]["spec"],
        json!({"containers": [{"name": "db", "image": "db"}]}),
        "no GMSA, no change"
    );
}

const RUNNING: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: iis, namespace: default}
spec:
  securityContext: {windowsOptions: {gmsaCredentialSpecName: gmsa-webapp1, gmsaCredentialSpec: CONTENTS}}
  containers: [{name: iis, image: iis}]
"#;

#[test]
fn updates_are_checked_against_the_old_pods() {
    let dir = setup();
    let running = RUNNING.replace(
        "CONTENTS",
        &serde_json::to_string(&webapp1_contents()).unwrap(),
    );
    std::fs::write(dir.path().join("running.yaml"), &running).unwrap();
    // Only the image changes: fine.
    std::fs::write(
        dir.path().join("new-image.yaml"),
        running.replace("image: iis", "image: iis:2"),
    )
    .unwrap();
    let out = run(
        dir.path(),
        &[
            "admit",
            "-f",
            "new-image.yaml",
            "--old",
            "running.yaml",
            "--state",
            "state",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr, "admitted Pod default/iis\n");
    assert_eq!(out.docs()[0]["spec"]["containers"][0]["image"], "iis:2");

    // Another spec name: refused.
    std::fs::write(
        dir.path().join("renamed.yaml"),
        running.replace(
            "gmsaCredentialSpecName: gmsa-webapp1",
            "gmsaCredentialSpecName: other",
        ),
    )
    .unwrap();
    let out = run(
        dir.path(),
        &[
            "admit",
            "-f",
            "renamed.yaml",
            "--old",
            "running.yaml",
            "--operation",
            "UPDATE",
            "--state",
            "state",
        ],
    );
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "denied Pod default/iis: cannot update an existing pod's GMSA settings (GMSA name modified on pod \"iis\") (code 403)\n"
    );
}

#[test]
fn unusable_input_exits_2() {
    let dir = setup();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("kindless.yaml", "metadata: {name: x}\n");
    write("broken.yaml", "kind: [\n");
    write("empty.yaml", "---\n");
    write(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nspec: {}\n",
    );
    write(
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n",
    );
    let cases: [(&[&str], &str); 8] = [
        (
            &["admit", "-f", "kindless.yaml", "--state", "state"],
            "kindless.yaml: document 1 has no kind",
        ),
        (
            &["admit", "-f", "broken.yaml", "--state", "state"],
            "broken.yaml: not valid YAML or JSON",
        ),
        (
            &["admit", "-f", "empty.yaml", "--state", "state"],
            "empty.yaml: no objects to review",
        ),
        (
            &["admit", "-f", "missing.yaml", "--state", "state"],
            "cannot read missing.yaml",
        ),
        (
            &["admit", "-f", "with-creds.yaml", "--state", "no-such-dir"],
            "state directory no-such-dir does not exist",
        ),
        (
            &["admit", "-f", "pod.yaml", "--state", "state", "-n", "b"],
            r#"Pod p is in namespace "a", not "b" as --namespace says"#,
        ),
        (
            &[
                "admit",
                "-f",
                "pod.yaml",
                "--state",
                "state",
                "--operation",
                "UPDATE",
            ],
            "--operation UPDATE needs --old FILE",
        ),
        (
            &["admit", "-f", "deploy.yaml", "--state", "state"],
            "Deployment default/d has no pod template at .spec.template",
        ),
    ];
    for (argv, expected) in cases {
        let out = run(dir.path(), argv);
        assert_eq!(out.code, 2, "{argv:?}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{argv:?}: {:?}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        assert_eq!(out.stdout, "", "{argv:?}");
    }
    // An UPDATE without the old pod.
    let out = run(
        dir.path(),
        &[
            "admit",
            "-f",
            "pod.yaml",
            "--old",
            "with-creds.yaml",
            "--state",
            "state",
        ],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no old version of Pod a/p in --old"),
        "{}",
        out.stderr
    );
}

/// Workloads of every kind, each with a fixed `spec.hostname`: those that run several pods at
/// once under the gMSA are warned of, naming the count, the host name and the fix.
const SHARED_HOSTNAMES: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      hostname: web1
      securityContext: {windowsOptions: {gmsaCredentialSpecName: gmsa-webapp1}}
      containers: [{name: iis, image: iis}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: single}
spec:
  selector: {matchLabels: {app: single}}
  template:
    metadata: {labels: {app: single}}
    spec:
      hostname: single
      securityContext: {windowsOptions: {gmsaCredentialSpecName: gmsa-webapp1}}
      containers: [{name: iis, image: iis}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      hostname: agent
      containers:
      - name: agent
        image: agent
        securityContext: {windowsOptions: {gmsaCredentialSpecName: gmsa-webapp1}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      parallelism: 2
      template:
        spec:
          hostname: reports
          restartPolicy: Never
          securityContext: {windowsOptions: {gmsaCredentialSpecName: gmsa-webapp1}}
          containers: [{name: job, image: job}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      hostname: db
      securityContext: {windowsOptions: {gmsaCredentialSpecName: gmsa-webapp1}}
      containers: [{name: db, image: db}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: plain}
spec:
  replicas: 3
  selector: {matchLabels: {app: plain}}
  template:
    metadata: {labels: {app: plain}}
    spec:
      hostname: plain
      containers: [{name: iis, image: iis}]
---
apiVersion: v1
kind: Pod
metadata:
  name: web-7776966999-n5nzr
  generateName: web-7776966999-
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: web-7776966999, uid: 5f2a, controller: true}
spec:
  hostname: web1
  securityContext: {windowsOptions: {gmsaCredentialSpecName: gmsa-webapp1}}
  containers: [{name: iis, image: iis}]
"#;

#[test]
fn workloads_running_several_pods_with_one_hostname_are_warned() {
    let dir = setup();
    std::fs::write(dir.path().join("shared.yaml"), SHARED_HOSTNAMES).unwrap();
    let out = run(
        dir.path(),
        &["admit", "-f", "shared.yaml", "--state", "state"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    let consequence = |name: &str| {
        format!("they share the NetBIOS name \"{name}\", which the domain sees as one computer, so only one of them at a time keeps its domain trust")
    };
    let random = "remove spec.hostname and install with --random-hostname, which gives each GMSA pod without one a random 15-character host name (the pods' own names agree in their first 15 characters)";
    let own = "remove spec.hostname, so that each pod's own name is its host name";
    assert_eq!(
        lines,
        [
            format!("warning: Deployment default/web: its 3 replicas run with the one spec.hostname \"web1\" under a gMSA: {}; {random}, or run one replica per host name", consequence("WEB1")),
            "admitted Deployment default/web".into(),
            "admitted Deployment default/single".into(),
            format!("warning: DaemonSet default/agent: its pods, one on each node (several on a cluster of more than one Windows node), run with the one spec.hostname \"agent\" under a gMSA: {}; {own}", consequence("AGENT")),
            "admitted DaemonSet default/agent".into(),
            format!("warning: CronJob default/nightly: up to 2 pods at once (parallelism 2) run with the one spec.hostname \"reports\" under a gMSA: {}; {random}, or run one replica per host name", consequence("REPORTS")),
            "admitted CronJob default/nightly".into(),
            // The StatefulSet controller replaces spec.hostname with each pod's own name.
            "admitted StatefulSet default/db".into(),
            "admitted Deployment default/plain".into(),
            // A pod alone: the webhook's rule, from its controller's ownerReference.
            format!("warning: Pod default/web-7776966999-n5nzr: GMSA pod sets spec.hostname \"web1\" and its ReplicaSet \"web-7776966999\" may run several pods with it under the same gMSA: {}; {random}, or run one replica per host name", consequence("WEB1")),
            "admitted Pod default/web-7776966999-n5nzr".into(),
        ]
    );
    // Warnings change nothing in what is admitted: the host name stays, the contents are in.
    let docs = out.docs();
    assert_eq!(docs.len(), 7);
    let web = &docs[0]["spec"]["template"]["spec"];
    assert_eq!(web["hostname"], "web1");
    assert_eq!(
        web["securityContext"]["windowsOptions"]["gmsaCredentialSpec"],
        json!(webapp1_contents())
    );
}
