//! `migrate-storage` against a real kube-apiserver (v1.20.2 and the current release), from
//! credential specs written through `v1alpha1` while the CRD stored `v1alpha1` (as the
//! reference's early CRD did): `install` and `doctor` report them, `migrate-storage` rewrites
//! them and leaves `status.storedVersions` at `[v1]`, and running it again changes nothing.
//!
//! Needs `hack/build-kube-apiserver.sh` to have run; `GMSA_SKIP_REAL_APISERVER=1` skips.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use std::time::Duration;

use gmsa_testkit::credspecs::{plugin_specs, webapp1};
use gmsa_testkit::real_cluster::{skip_requested, RealCluster, ServerVersion, SKIP_ENV};
use serde_json::{json, Value};
use support::{expect, find, Run};

const CRD: &str = "gmsacredentialspecs.windows.k8s.io";

fn gmsa(cluster: &RealCluster, args: &[&str]) -> Run {
    support::on_cluster(cluster.admin_kubeconfig(), args)
}

fn kubectl_json(cluster: &RealCluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(
        &cluster
            .kubectl_ok(&all, None)
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap()
}

fn stored_versions(cluster: &RealCluster) -> Value {
    kubectl_json(cluster, &["get", "crd", CRD])["status"]["storedVersions"].clone()
}

/// The CRD as the reference's early releases had it: `v1alpha1` stored, `v1` served.
fn alpha_storage_crd() -> Value {
    let mut crd = gmsa_deploy::crd::custom_resource_definition();
    for version in crd["spec"]["versions"].as_array_mut().unwrap() {
        let alpha = version["name"] == "v1alpha1";
        version["storage"] = json!(alpha);
        let fields = version.as_object_mut().unwrap();
        fields.remove("deprecated");
        fields.remove("deprecationWarning");
    }
    crd
}

fn doctor_findings(cluster: &RealCluster) -> Vec<Value> {
    let out = gmsa(cluster, &["doctor", "-o", "json"]);
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    report["findings"].as_array().unwrap().clone()
}

#[test]
fn migrate_storage_on_kube_1_20() {
    migrate_storage(ServerVersion::V1_20);
}

#[test]
fn migrate_storage_on_current_kube() {
    migrate_storage(ServerVersion::Current);
}

fn migrate_storage(version: ServerVersion) {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let cluster = RealCluster::start(version).unwrap_or_else(|e| panic!("{e}"));
    let step = |name: &str| eprintln!("== {name}");

    step("specs written through v1alpha1 while the CRD stores v1alpha1");
    cluster
        .apply_crd(&alpha_storage_crd().to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut old_specs = vec![webapp1("gmsa-webapp1")];
    old_specs.extend(plugin_specs().into_iter().map(|(_, spec)| spec));
    for spec in &mut old_specs {
        spec["apiVersion"] = json!("windows.k8s.io/v1alpha1");
        cluster
            .apply(&spec.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(stored_versions(&cluster), json!(["v1alpha1"]));

    step("our CRD: v1 stored from now on; v1alpha1 stays in storedVersions");
    cluster
        .apply_crd(&gmsa_deploy::crd::custom_resource_definition().to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored_versions(&cluster), json!(["v1alpha1", "v1"]));
    // The custom resource handler picks the new storage version up from a watch.
    std::thread::sleep(Duration::from_secs(3));
    cluster
        .apply(&webapp1("gmsa-written-as-v1").to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let before = kubectl_json(&cluster, &["get", "gmsacredentialspecs.v1.windows.k8s.io"]);
    let before = before["items"].as_array().unwrap().clone();
    assert_eq!(before.len(), 5);

    step("doctor warns; install (server dry run) notes it");
    let findings = doctor_findings(&cluster);
    let row = expect(&findings, "crd-storage", CRD, "warn", "stored as v1alpha1");
    assert_eq!(row["fix"], "kubectl gmsa migrate-storage");
    let out = gmsa(
        &cluster,
        &[
            "install",
            "--apply",
            "--dry-run=server",
            "--webhook-url",
            "https://127.0.0.1:9",
        ],
    );
    assert!(
        out.stderr
            .contains("note: credential specs may still be stored as v1alpha1")
            && out.stderr.contains("run `kubectl gmsa migrate-storage`"),
        "{}\n{}",
        out.code,
        out.stderr
    );

    step("migrate-storage rewrites every spec, then drops v1alpha1");
    let out = gmsa(&cluster, &["migrate-storage"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for spec in &before {
        let name = spec["metadata"]["name"].as_str().unwrap();
        assert!(
            out.stdout
                .contains(&format!("gmsacredentialspec/{name} rewritten as v1")),
            "{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains(&format!(
            "customresourcedefinition/{CRD}: storedVersions [v1alpha1, v1] -> [v1]"
        )),
        "{}",
        out.stdout
    );
    assert_eq!(stored_versions(&cluster), json!(["v1"]));
    let after = kubectl_json(&cluster, &["get", "gmsacredentialspecs.v1.windows.k8s.io"]);
    for old in &before {
        let name = &old["metadata"]["name"];
        let new = after["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| &s["metadata"]["name"] == name)
            .unwrap();
        assert_eq!(new["credspec"], old["credspec"], "{name}");
        if name != "gmsa-written-as-v1" {
            // Written again, so stored in the storage version.
            assert_ne!(
                new["metadata"]["resourceVersion"], old["metadata"]["resourceVersion"],
                "{name}"
            );
        }
    }
    // Still readable through v1alpha1, served as before.
    let alpha = kubectl_json(
        &cluster,
        &[
            "get",
            "gmsacredentialspecs.v1alpha1.windows.k8s.io",
            "gmsa-webapp1",
        ],
    );
    assert_eq!(alpha["credspec"], webapp1("x")["credspec"]);

    step("again: nothing to do; doctor is quiet");
    let out = gmsa(&cluster, &["migrate-storage"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        format!("customresourcedefinition/{CRD}: only v1 is stored, nothing to migrate\n")
    );
    assert_eq!(stored_versions(&cluster), json!(["v1"]));
    assert!(find(&doctor_findings(&cluster), "crd-storage", CRD).is_none());
}
