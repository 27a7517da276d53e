//! `kubectl gmsa grant --apply` end to end against a real kube-apiserver, on each version the
//! tier covers (v1.20.2 and the current release): the built
//! binary applies the RBAC objects with the admin's kubeconfig, and what the API server stored
//! and answers (kubectl get, kubectl auth can-i) is checked.
//!
//! Granting needs no GMSACredentialSpec CRD (RBAC names resources it does not know), and the
//! first scenarios run without it. `kubectl auth can-i` does need it: without the type in
//! discovery, kubectl sends `gmsacredentialspecs.windows.k8s.io` as a resource of the core
//! group and is always told no. So the CRD is created before the access checks.
//!
//! One cluster serves every scenario, in order; all of them run even when one fails.
//! Needs `hack/build-kube-apiserver.sh` to have run; `GMSA_SKIP_REAL_APISERVER=1` skips.

#![allow(clippy::unwrap_used)] // tests may panic

mod support;

use std::time::Instant;

use gmsa_testkit::real_cluster::{skip_requested, RealCluster, ServerVersion, SKIP_ENV};
use serde_json::{json, Value};
use support::{run_env, Run};

const SPEC: &str = "gmsa-webapp1";
const ROLE: &str = "gmsa-webapp1-user";
/// A service account granted in its own namespace, besides `default:default`.
const NS: &str = "web";
const SA: &str = "iis";
const RBAC: &str = "rbac.authorization.k8s.io";

struct Fixture {
    cluster: RealCluster,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// Runs `kubectl-gmsa` with the admin's kubeconfig.
    fn gmsa(&self, args: &[&str]) -> Run {
        let kubeconfig = self
            .cluster
            .admin_kubeconfig()
            .to_str()
            .unwrap()
            .to_string();
        run_env(
            self.dir.path(),
            args,
            None,
            &[
                ("KUBECONFIG", &kubeconfig),
                ("NO_PROXY", "127.0.0.1,localhost"),
                ("no_proxy", "127.0.0.1,localhost"),
            ],
        )
    }

    /// `kubectl get KIND NAME -o json` (with `-n` when `namespace` is given); `None` when not
    /// found.
    fn get(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Result<Option<Value>, String> {
        let mut args = vec!["get", kind, name, "-o", "json", "--show-managed-fields"];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        let out = self.cluster.kubectl(&args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            serde_json::from_slice(&out.stdout)
                .map(Some)
                .map_err(|e| e.to_string())
        } else if stderr.contains("NotFound") || stderr.contains("not found") {
            Ok(None)
        } else {
            Err(format!("kubectl {}: {stderr}", args.join(" ")))
        }
    }

    fn resource_versions(&self) -> Result<Vec<String>, String> {
        let objects = [
            ("clusterrole", ROLE.to_string(), None),
            (
                "rolebinding",
                format!("allow-default-use-{SPEC}"),
                Some("default"),
            ),
            ("rolebinding", format!("allow-{SA}-use-{SPEC}"), Some(NS)),
        ];
        objects
            .iter()
            .map(|(kind, name, ns)| {
                let object = self
                    .get(kind, name, *ns)?
                    .ok_or_else(|| format!("{kind} {name} is missing"))?;
                Ok(object["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string())
            })
            .collect()
    }

    /// `kubectl auth can-i use gmsacredentialspecs.windows.k8s.io/SPEC` as a service account.
    fn can_use(&self, spec: &str, namespace: &str, sa: &str) -> Result<bool, String> {
        let resource = format!("gmsacredentialspecs.windows.k8s.io/{spec}");
        let user = format!("--as=system:serviceaccount:{namespace}:{sa}");
        let out = self.cluster.kubectl(
            &["auth", "can-i", "use", &resource, &user, "-n", namespace],
            None,
        );
        match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" => Ok(true),
            "no" => Ok(false),
            other => Err(format!(
                "kubectl auth can-i answered {other:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }
}

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

fn succeeded(out: &Run) -> Result<(), String> {
    check(out.code == 0, || {
        format!("exit {}: {}{}", out.code, out.stdout, out.stderr)
    })
}

fn grant_args<'a>(spec: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "grant",
        spec,
        "--service-account",
        "default:default",
        "--service-account",
        "web:iis",
        "--apply",
    ];
    args.extend_from_slice(extra);
    args
}

fn apply_creates_the_role_and_bindings(f: &Fixture) -> Result<(), String> {
    let out = f.gmsa(&grant_args(SPEC, &[]));
    succeeded(&out)?;
    let expected = format!(
        "clusterrole.{RBAC}/{ROLE} serverside-applied\n\
         rolebinding.{RBAC}/allow-default-use-{SPEC} serverside-applied (namespace default)\n\
         rolebinding.{RBAC}/allow-{SA}-use-{SPEC} serverside-applied (namespace {NS})\n"
    );
    check(out.stdout == expected, || {
        format!("printed\n{}", out.stdout)
    })?;

    let role = f.get("clusterrole", ROLE, None)?.ok_or("no ClusterRole")?;
    check(
        role["rules"]
            == json!([{
                "apiGroups": ["windows.k8s.io"],
                "resources": ["gmsacredentialspecs"],
                "verbs": ["use"],
                "resourceNames": [SPEC]
            }]),
        || format!("ClusterRole rules {}", role["rules"]),
    )?;
    let managers: Vec<(&str, &str)> = role["metadata"]["managedFields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|m| {
                    (
                        m["manager"].as_str().unwrap_or_default(),
                        m["operation"].as_str().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    check(managers == [("kubectl-gmsa", "Apply")], || {
        format!("managed fields {managers:?}")
    })?;

    for (namespace, sa) in [("default", "default"), (NS, SA)] {
        let name = format!("allow-{sa}-use-{SPEC}");
        let binding = f
            .get("rolebinding", &name, Some(namespace))?
            .ok_or_else(|| format!("no RoleBinding {namespace}/{name}"))?;
        check(
            binding["roleRef"] == json!({"apiGroup": RBAC, "kind": "ClusterRole", "name": ROLE}),
            || format!("{name} roleRef {}", binding["roleRef"]),
        )?;
        check(
            binding["subjects"]
                == json!([{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]),
            || format!("{name} subjects {}", binding["subjects"]),
        )?;
    }
    Ok(())
}

fn reapplying_changes_nothing(f: &Fixture) -> Result<(), String> {
    let before = f.resource_versions()?;
    let out = f.gmsa(&grant_args(SPEC, &[]));
    succeeded(&out)?;
    let after = f.resource_versions()?;
    check(before == after, || {
        format!("resourceVersions {before:?} became {after:?}")
    })
}

fn server_dry_run_creates_nothing(f: &Fixture) -> Result<(), String> {
    let spec = "gmsa-webapp2";
    let out = f.gmsa(&grant_args(spec, &["--dry-run=server"]));
    succeeded(&out)?;
    check(
        out.stdout.lines().count() == 3
            && out
                .stdout
                .lines()
                .all(|l| l.contains("serverside-applied (server dry run)")),
        || format!("printed\n{}", out.stdout),
    )?;
    let role = f.get("clusterrole", &format!("{spec}-user"), None)?;
    check(role.is_none(), || format!("dry run stored {role:?}"))?;
    for (namespace, sa) in [("default", "default"), (NS, SA)] {
        let name = format!("allow-{sa}-use-{spec}");
        let binding = f.get("rolebinding", &name, Some(namespace))?;
        check(binding.is_none(), || format!("dry run stored {binding:?}"))?;
    }
    check(!f.can_use(spec, NS, SA)?, || {
        format!("{NS}:{SA} may use {spec} after a dry run")
    })
}

fn granted_service_accounts_may_use_the_spec(f: &Fixture) -> Result<(), String> {
    let cluster = &f.cluster;
    cluster
        .apply(&gmsa_deploy::crd::custom_resource_definition().to_string())
        .map_err(|e| e.to_string())?;
    cluster
        .kubectl_ok(
            &[
                "wait",
                "--for=condition=Established",
                &format!("crd/{}", gmsa_deploy::crd::crd_name()),
                "--timeout=30s",
            ],
            None,
        )
        .map_err(|e| e.to_string())?;
    for (namespace, sa) in [("default", "default"), (NS, SA)] {
        check(f.can_use(SPEC, namespace, sa)?, || {
            format!("{namespace}:{sa} may not use {SPEC}")
        })?;
    }
    // Only the named spec, only the granted accounts.
    check(!f.can_use("gmsa-other", NS, SA)?, || {
        format!("{NS}:{SA} may use gmsa-other")
    })?;
    check(!f.can_use(SPEC, NS, "ungranted")?, || {
        format!("{NS}:ungranted may use {SPEC}")
    })
}

fn conflicts_are_refused_unless_forced(f: &Fixture) -> Result<(), String> {
    // Another field manager takes the rules over (server-side apply, forced).
    let theirs = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": ROLE},
        "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"],
                   "verbs": ["use"], "resourceNames": ["gmsa-someone-else"]}]
    });
    f.cluster
        .kubectl_ok(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=someone-else",
                "-f",
                "-",
            ],
            Some(&theirs.to_string()),
        )
        .map_err(|e| e.to_string())?;
    let out = f.gmsa(&grant_args(SPEC, &[]));
    check(out.code == 2, || {
        format!("exit {}: {}{}", out.code, out.stdout, out.stderr)
    })?;
    check(
        out.stderr
            .starts_with(&format!("error: cannot apply ClusterRole {ROLE}: "))
            && out.stderr.contains("someone-else"),
        || out.stderr.clone(),
    )?;
    check(!f.can_use(SPEC, NS, SA)?, || {
        "the other manager's rules did not take effect".to_string()
    })?;
    let out = f.gmsa(&grant_args(SPEC, &["--force-conflicts"]));
    succeeded(&out)?;
    check(f.can_use(SPEC, NS, SA)?, || {
        format!("{NS}:{SA} may not use {SPEC} after --force-conflicts")
    })
}

#[test]
fn grant_apply_on_kube_1_20() {
    grant_apply_against_a_real_api_server(ServerVersion::V1_20);
}

#[test]
fn grant_apply_on_current_kube() {
    grant_apply_against_a_real_api_server(ServerVersion::Current);
}

fn grant_apply_against_a_real_api_server(version: ServerVersion) {
    if skip_requested() {
        eprintln!("skipping: {SKIP_ENV}=1");
        return;
    }
    let cluster = RealCluster::start(version).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("real cluster ready in {:?}", cluster.startup_time());
    cluster
        .create_service_account(NS, SA)
        .unwrap_or_else(|e| panic!("{e}"));
    let fixture = Fixture {
        cluster,
        dir: tempfile::tempdir().unwrap(),
    };
    type Scenario = fn(&Fixture) -> Result<(), String>;
    let scenarios: [(&str, Scenario); 5] = [
        (
            "apply_creates_the_role_and_bindings",
            apply_creates_the_role_and_bindings,
        ),
        ("reapplying_changes_nothing", reapplying_changes_nothing),
        (
            "granted_service_accounts_may_use_the_spec",
            granted_service_accounts_may_use_the_spec,
        ),
        (
            "server_dry_run_creates_nothing",
            server_dry_run_creates_nothing,
        ),
        (
            "conflicts_are_refused_unless_forced",
            conflicts_are_refused_unless_forced,
        ),
    ];
    let mut failures = Vec::new();
    for (name, scenario) in scenarios {
        let began = Instant::now();
        match scenario(&fixture) {
            Ok(()) => eprintln!("  ok   {name} ({:?})", began.elapsed()),
            Err(e) => {
                eprintln!("  FAIL {name}: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the grant scenarios failed:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        fixture.cluster.log_tails(20)
    );
}
