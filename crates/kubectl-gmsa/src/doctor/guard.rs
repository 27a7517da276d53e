//! The `uninstall-guard` row: a guard `uninstall` left refuses every new GMSA pod until
//! admission is installed again.

use gmsa_deploy::policies::guard;
use kube::Client;

use super::objects::get;
use super::report::Report;
use crate::cluster::kind;

/// One failing row when the guard of install `name` is there; nothing otherwise (on servers
/// without ValidatingAdmissionPolicy v1 there can be none).
pub(super) async fn check(client: &Client, name: &str, report: &mut Report) {
    let policy = guard::guard(name);
    let info = kind(
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
    );
    if let Ok(Some(_)) = get(client, info, None, &policy).await {
        report.fail(
            "uninstall-guard",
            &policy,
            "GMSA pods are refused: kubectl gmsa uninstall left this guard because GMSA admission was uninstalled".into(),
            format!("kubectl gmsa install --apply (deletes the guard), or kubectl delete validatingadmissionpolicy {policy} (GMSA pods are then admitted without their credential specs)"),
        );
    }
}
