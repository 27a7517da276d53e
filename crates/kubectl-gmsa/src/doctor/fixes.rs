//! The `kubectl gmsa install` lines doctor prints as fixes, built for the admission mode doctor
//! found: a fix must be one install accepts in that mode, and must not switch the mode (a bare
//! `install --apply` on a policy install would put the webhook back).

use gmsa_deploy::{Admission, Settings};

/// What an install fix is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallFix {
    /// Apply the rendered objects again (missing CRD, configuration, policy).
    Apply,
    /// New self-signed certificates (webhook mode only: policy mode serves nothing).
    RotateCerts,
    /// Delete what is left of the reference webhook.
    RetireReference,
    /// The Windows node setup DaemonSet.
    NodeSetup,
    /// Random host names for GMSA pods (webhook mode only: CEL has no randomness).
    RandomHostname,
}

impl InstallFix {
    /// Every install fix doctor may print.
    pub const ALL: [InstallFix; 5] = [
        InstallFix::Apply,
        InstallFix::RotateCerts,
        InstallFix::RetireReference,
        InstallFix::NodeSetup,
        InstallFix::RandomHostname,
    ];

    fn flag(self) -> Option<&'static str> {
        match self {
            InstallFix::Apply => None,
            InstallFix::RotateCerts => Some("--rotate-certs"),
            InstallFix::RetireReference => Some("--retire-reference"),
            InstallFix::NodeSetup => Some("--node-setup"),
            InstallFix::RandomHostname => Some("--random-hostname"),
        }
    }
}

/// The install doctor examines: its admission mode, the `--name` given to it and the
/// namespace it was found in.
#[derive(Debug, Clone)]
pub struct Fixes {
    pub admission: Admission,
    pub name: String,
    pub namespace: String,
}

impl Fixes {
    /// The `kubectl gmsa install` command for `fix` in this mode, or `None` when the mode has
    /// no such thing (install would refuse it).
    pub fn install(&self, fix: InstallFix) -> Option<String> {
        let policies = self.admission == Admission::Policies;
        if policies && matches!(fix, InstallFix::RotateCerts | InstallFix::RandomHostname) {
            return None;
        }
        let mut command = gmsa_deploy::reinstall_command(&self.settings(self.admission));
        if let Some(flag) = fix.flag() {
            command.push(' ');
            command.push_str(flag);
        }
        Some(command)
    }

    /// The install command that moves this install to the webhook, in place.
    pub fn switch_to_webhook(&self) -> String {
        gmsa_deploy::reinstall_command(&self.settings(Admission::Webhook))
    }

    /// This install's settings, in `admission` mode.
    fn settings(&self, admission: Admission) -> Settings {
        Settings {
            admission,
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            ..Settings::default()
        }
    }

    /// `install` again, as the fix for anything install creates.
    pub fn reinstall(&self) -> String {
        self.install(InstallFix::Apply).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
pub(super) mod tests {
    use clap::Parser as _;
    use gmsa_deploy::{names, KubeVersion};

    use super::*;
    use crate::install::InstallArgs;

    /// `kubectl gmsa install`'s own arguments, parsed as the CLI parses them (through
    /// `InstallArgs`, not `cli::Cli`: `cli` uses `doctor`, so `doctor` does not use it back).
    #[derive(Debug, clap::Parser)]
    #[command(name = "install")]
    struct Install {
        #[command(flatten)]
        args: InstallArgs,
    }

    /// Every `kubectl gmsa install ...` command in a fix text, up to the first `(`, `,`, `;`
    /// or backquote after it.
    pub(in crate::doctor) fn install_commands(fix: &str) -> Vec<String> {
        fix.match_indices("kubectl gmsa install")
            .map(|(at, _)| {
                let rest = &fix[at..];
                let end = rest.find(['(', ',', ';', '`']).unwrap_or(rest.len());
                rest[..end].trim().to_string()
            })
            .collect()
    }

    /// Parses a printed install command as the CLI would, and runs install's own validation
    /// for a cluster where the mode is possible; returns the admission mode it would install.
    pub(in crate::doctor) fn accepted_by_install(command: &str) -> Admission {
        let words = command
            .strip_prefix("kubectl gmsa install")
            .unwrap_or_else(|| panic!("{command} is not install"))
            .split_whitespace();
        let args = Install::try_parse_from(std::iter::once("install").chain(words))
            .unwrap_or_else(|e| panic!("{command}: {e}"))
            .args;
        args.validate(KubeVersion::ADMISSION_POLICIES)
            .unwrap_or_else(|e| panic!("install refuses {command}: {e:#}"));
        args.admission
    }

    pub(in crate::doctor) fn modes() -> [Fixes; 3] {
        let fixes = |admission, name: &str, namespace: &str| Fixes {
            admission,
            name: name.into(),
            namespace: namespace.into(),
        };
        [
            fixes(
                Admission::Webhook,
                names::DEFAULT_NAME,
                names::DEFAULT_NAMESPACE,
            ),
            fixes(
                Admission::Policies,
                names::DEFAULT_NAME,
                names::DEFAULT_NAMESPACE,
            ),
            fixes(Admission::Policies, "gmsa-other", "gmsa-other-system"),
        ]
    }

    #[test]
    fn every_install_fix_is_accepted_in_its_mode_and_keeps_it() {
        for fixes in modes() {
            let printed: Vec<String> = InstallFix::ALL
                .iter()
                .filter_map(|fix| fixes.install(*fix))
                .collect();
            assert!(printed.len() >= 3, "{fixes:?}: {printed:?}");
            for command in printed {
                assert_eq!(accepted_by_install(&command), fixes.admission, "{command}");
                assert_eq!(
                    install_commands(&command).as_slice(),
                    std::slice::from_ref(&command),
                    "the extractor sees the whole command"
                );
                // The fix reinstalls this install where it is, never a second copy.
                for (flag, value, default) in [
                    ("--name", &fixes.name, names::DEFAULT_NAME),
                    ("--namespace", &fixes.namespace, names::DEFAULT_NAMESPACE),
                ] {
                    assert_eq!(
                        command.contains(&format!("{flag} {value}")),
                        value != default,
                        "{command}"
                    );
                }
            }
        }
    }

    #[test]
    fn policy_mode_has_no_random_hostname_and_no_certificates() {
        let policies = &modes()[1];
        assert_eq!(policies.install(InstallFix::RandomHostname), None);
        assert_eq!(policies.install(InstallFix::RotateCerts), None);
        assert!(modes()[0].install(InstallFix::RandomHostname).is_some());
    }
}
