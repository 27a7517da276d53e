//! The Helm chart in the node: install over what a CLI uninstall left, an image upgrade under
//! load, and the way out that keeps GMSA pods refused rather than admitted without contents.

use super::helm::{chart, helm_command};
use super::*;

/// The release, its namespace, and helm's state in a directory of the test's own.
struct Helm<'a> {
    env: &'a Env<'a>,
    home: tempfile::TempDir,
}

impl Helm<'_> {
    fn run(&self, args: &[&str]) -> String {
        let out = helm_command(self.home.path(), args)
            .env("KUBECONFIG", self.env.node.api().admin_kubeconfig())
            .output()
            .expect("run helm");
        assert!(
            out.status.success(),
            "helm {}: {}{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.env.pods_report()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// After a CLI uninstall: the guard it left is deleted as its message says, the chart is
/// installed with our image and admits pods with contents, a `helm upgrade` to another image
/// tag fails no admission under load, and `kubectl gmsa uninstall` before `helm uninstall`
/// leaves the guard, so GMSA pods stay refused after the release is gone.
pub(crate) fn helm_install_upgrade_uninstall(env: &Env) {
    let helm = Helm {
        env,
        home: tempfile::tempdir().unwrap(),
    };
    env.kubectl(&[
        "delete",
        "validatingadmissionpolicy,validatingadmissionpolicybinding",
        "gmsa-webhook-uninstalled",
    ]);
    let chart = chart().display().to_string();
    let tag = IMAGE.rsplit(':').next().unwrap();
    let began = Instant::now();
    helm.run(&[
        "install",
        "gmsa-webhook",
        &chart,
        "--namespace",
        SYSTEM_NS,
        "--set",
        &format!("image.tag={tag}"),
        "--wait",
        "--timeout=180s",
    ]);
    env.rollout_status();
    eprintln!(
        "node tier: helm install --wait returned in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    env.wait_for(
        "a GMSA pod admitted by the chart's webhook",
        Duration::from_secs(60),
        || match env.dry_run(&gmsa_pod("webapp")) {
            (201, body) if body.contains(MARKER) => Ok(()),
            (status, body) => Err(format!("HTTP {status}: {body}")),
        },
    );

    let load = PodLoad::start(env.node.api(), NS, &gmsa_pod("webapp"), MARKER, true, 3);
    thread::sleep(Duration::from_secs(2));
    helm.run(&[
        "upgrade",
        "gmsa-webhook",
        &chart,
        "--namespace",
        SYSTEM_NS,
        "--set",
        &format!("image.tag={tag}-next"),
        "--wait",
        "--timeout=180s",
    ]);
    env.rollout_status();
    let tally = load.stop();
    assert_clean("helm upgrade to a new image tag", &tally);
    let deployment = env.json(&["get", "deployment", "-n", SYSTEM_NS, DEPLOYMENT]);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("gmsa-webhook:{tag}-next")
    );

    let out = env.gmsa_ok(&["uninstall"]);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains("webapp"),
        "the GMSA Deployment is not named: {said}"
    );
    helm.run(&[
        "uninstall",
        "gmsa-webhook",
        "--namespace",
        SYSTEM_NS,
        "--wait",
    ]);
    let (status, body) = env.dry_run(&gmsa_pod("webapp"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("GMSA admission is not installed"), "{body}");
    let (status, body) = env.dry_run(&plain_pod());
    assert_eq!(status, 201, "{body}");
    // Nothing of the release is left, and no webhook configuration points at nothing; the
    // guard and the CRD (Helm never deletes crds/) stay on purpose.
    let left = env.kubectl(&[
        "get",
        "deployment,service,secret,serviceaccount,role,rolebinding,pdb",
        "-n",
        SYSTEM_NS,
        "-o",
        "name",
    ]);
    assert!(
        !left.contains("gmsa-webhook"),
        "left after both uninstalls: {left}"
    );
    let left = env.kubectl(&[
        "get",
        "clusterrole,clusterrolebinding,mutatingwebhookconfiguration,validatingwebhookconfiguration",
        "-o",
        "name",
    ]);
    assert!(
        !left.contains("gmsa-webhook"),
        "left after both uninstalls: {left}"
    );
}
