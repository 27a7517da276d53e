//! The `uninstall-guard` row: a guard `uninstall` left refuses every new GMSA pod until
//! admission is installed again.

use gmsa_deploy::policies::guard;
use kube::Client;

use super::fixes::Fixes;
use super::objects::get;
use super::report::Report;

/// One failing row when the guard of the install doctor examines (`fixes.name`) is there;
/// nothing otherwise (on servers without ValidatingAdmissionPolicy v1 there can be none).
pub(super) async fn check(client: &Client, fixes: &Fixes, report: &mut Report) {
    let policy = guard::guard(&fixes.name);
    let info = gmsa_deploy::Kind::ValidatingAdmissionPolicy.info();
    if let Ok(Some(_)) = get(client, info, None, &policy).await {
        report.fail(
            "uninstall-guard",
            &policy,
            "GMSA pods are refused: kubectl gmsa uninstall left this guard because GMSA admission was uninstalled".into(),
            fix(&policy, fixes),
        );
    }
}

/// Both ways out: install again in the mode doctor found (install deletes the guard), or
/// delete the guard.
fn fix(policy: &str, fixes: &Fixes) -> String {
    format!(
        "{} (deletes the guard), or kubectl delete validatingadmissionpolicy {policy} (GMSA pods are then admitted without their credential specs)",
        fixes.reinstall()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::super::fixes::tests::{accepted_by_install, install_commands, modes};
    use super::*;

    /// The install this row prints is one install accepts in the mode doctor found, for the
    /// install doctor was pointed at (`--name` kept).
    #[test]
    fn the_guard_fix_is_accepted_by_install_in_each_mode() {
        for fixes in modes() {
            let policy = guard::guard(&fixes.name);
            let text = fix(&policy, &fixes);
            let commands = install_commands(&text);
            assert_eq!(commands.len(), 1, "{text}");
            assert_eq!(accepted_by_install(&commands[0]), fixes.admission, "{text}");
            if fixes.name != gmsa_deploy::names::DEFAULT_NAME {
                assert!(
                    commands[0].contains(&format!("--name {}", fixes.name)),
                    "{text}"
                );
            }
            assert!(
                text.contains(&format!(
                    "kubectl delete validatingadmissionpolicy {policy}"
                )),
                "{text}"
            );
        }
    }
}
