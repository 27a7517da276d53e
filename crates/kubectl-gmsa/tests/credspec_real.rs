//! `kubectl gmsa credspec new|convert --apply` against the real current kube-apiserver: the
//! built binary applies the spec with the admin's kubeconfig, checked as the API server
//! stored it.
//!
//! Needs `hack/build-kube-apiserver.sh v1.37.2` and `hack/build-etcd.sh` to have run;
//! `GMSA_SKIP_REAL_APISERVER=1` skips.

#![allow(clippy::unwrap_used)] // tests may panic

mod support;

use gmsa_core::canonical::to_go_json;
use gmsa_testkit::real_cluster::{skip_requested, RealCluster, ServerVersion, SKIP_ENV};
use serde_json::Value;
use support::{copy_data, run_env, Run};

const NEW_WEBAPP1: &[&str] = &[
    "credspec",
    "new",
    "gmsa-webapp1",
    "--account",
    "WebApp1",
    "--domain",
    "contoso.com",
    "--netbios",
    "CONTOSO",
    "--domain-guid",
    "244818ae-87ac-4fcd-92ec-e79e5252348a",
    "--domain-sid",
    "S-1-5-21-2126449477-2524075714-3094792973",
    "--apply",
];
const SHOWN: &str = "gmsacredentialspec.windows.k8s.io/gmsa-webapp1";

struct Fixture {
    cluster: RealCluster,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn gmsa(&self, args: &[&str]) -> Run {
        let kubeconfig = self.cluster.admin_kubeconfig().to_str().unwrap();
        let run = run_env(
            self.dir.path(),
            args,
            None,
            &[
                ("KUBECONFIG", kubeconfig),
                ("NO_PROXY", "127.0.0.1,localhost"),
                ("no_proxy", "127.0.0.1,localhost"),
            ],
        );
        assert_eq!(run.code, 0, "{args:?}: {}{}", run.stdout, run.stderr);
        run
    }

    /// The stored spec, `None` when there is none.
    fn get(&self, name: &str) -> Option<Value> {
        let out = self
            .cluster
            .kubectl(&["get", "gmsacredentialspec", name, "-o", "json"], None);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// Checks that `name` is stored at `generation` with a credspec naming `account`.
    fn assert_stored(&self, name: &str, generation: i64, account: &str) -> Value {
        let object = self.get(name).unwrap();
        assert_eq!(object["metadata"]["generation"], generation, "{object}");
        assert!(
            to_go_json(&object["credspec"])
                .contains(&format!("\"MachineAccountName\":\"{account}\"")),
            "{object}"
        );
        object
    }
}

fn lines(run: &Run) -> Vec<&str> {
    run.stdout.lines().collect()
}

#[test]
fn credspec_apply_stores_the_spec_on_current_kube() {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let cluster = RealCluster::start(ServerVersion::Current).unwrap_or_else(|e| panic!("{e}"));
    cluster
        .apply_crd(&gmsa_deploy::crd::custom_resource_definition().to_string())
        .unwrap();
    let f = Fixture {
        cluster,
        dir: tempfile::tempdir().unwrap(),
    };

    // A server dry run stores nothing.
    let dry = f.gmsa(&[NEW_WEBAPP1, &["--dry-run=server"]].concat());
    assert_eq!(
        lines(&dry),
        [format!("{SHOWN} serverside-applied (server dry run)")]
    );
    assert_eq!(f.get("gmsa-webapp1"), None);

    // Created.
    let created = f.gmsa(NEW_WEBAPP1);
    assert_eq!(lines(&created), [format!("{SHOWN} serverside-applied")]);
    let first = f.assert_stored("gmsa-webapp1", 1, "WebApp1");

    // Applying the same again changes nothing.
    f.gmsa(NEW_WEBAPP1);
    let unchanged = f.get("gmsa-webapp1").unwrap();
    assert_eq!(
        unchanged["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );

    // A changed spec is a new generation.
    f.gmsa(
        &[
            NEW_WEBAPP1,
            &["--additional-account", "Reports@fabrikam.com"],
        ]
        .concat(),
    );
    let second = f.assert_stored("gmsa-webapp1", 2, "WebApp1");
    assert_ne!(second["credspec"], first["credspec"]);

    // convert --apply the same way.
    let json = copy_data("contoso_webapp1.json", f.dir.path());
    let json = json.to_str().unwrap();
    let converted = f.gmsa(&[
        "credspec",
        "convert",
        json,
        "--name",
        "converted",
        "--apply",
    ]);
    assert_eq!(
        lines(&converted),
        ["gmsacredentialspec.windows.k8s.io/converted serverside-applied"]
    );
    f.assert_stored("converted", 1, "WebApp1");
}
