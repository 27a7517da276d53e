//! The `pod-hostname` row. Windows gives a container the NetBIOS name of its host name's first
//! 15 characters; several containers running at once under one name with one gMSA conflict
//! (Kerberos tickets and the secure channel follow the name), which is why the webhook has
//! RANDOM_HOSTNAME. A pod's host name is its own name unless `spec.hostname` is set, so pods of
//! one ReplicaSet conflict only when their names agree in the first 15 characters, and pods that
//! set the same `spec.hostname` always do. Pods that are not running yet (Pending) conflict only
//! once they run together: a warning until then.

use serde_json::Value;

use super::fixes::{Fixes, InstallFix};
use super::report::Status;

/// Windows' limit on NetBIOS computer names.
const NETBIOS_LENGTH: usize = 15;

/// The NetBIOS computer name Windows derives from the pod's host name.
pub fn netbios_name(pod: &Value) -> String {
    host_name(pod)
        .chars()
        .take(NETBIOS_LENGTH)
        .collect::<String>()
        .to_ascii_uppercase()
}

fn host_name(pod: &Value) -> &str {
    fixed_host_name(pod)
        .or_else(|| pod["metadata"]["name"].as_str())
        .unwrap_or_default()
}

fn fixed_host_name(pod: &Value) -> Option<&str> {
    pod["spec"]["hostname"].as_str().filter(|h| !h.is_empty())
}

/// A live pod (not finished, not being deleted) as the host name check sees it.
#[derive(Debug, Clone)]
pub(super) struct HostPod {
    /// `namespace/name`.
    pub(super) subject: String,
    pub(super) netbios: String,
    /// Whether `spec.hostname` sets the name (RANDOM_HOSTNAME leaves those alone).
    pub(super) fixed: bool,
    /// Whether it runs now (phase Running), as opposed to Pending.
    pub(super) running: bool,
    /// The credential specs it names.
    pub(super) specs: Vec<String>,
}

impl HostPod {
    /// The pod, if it is live: finished pods and pods being deleted hold no name.
    pub(super) fn live(subject: String, pod: &Value, specs: Vec<String>) -> Option<Self> {
        let phase = pod["status"]["phase"].as_str();
        if matches!(phase, Some("Succeeded" | "Failed"))
            || !pod["metadata"]["deletionTimestamp"].is_null()
        {
            return None;
        }
        Some(HostPod {
            subject,
            netbios: netbios_name(pod),
            fixed: fixed_host_name(pod).is_some(),
            running: phase == Some("Running"),
            specs,
        })
    }
}

/// The `pod-hostname` finding for `pod` and one spec it names, among the live pods `all`:
/// `None` when no other live pod using that spec has its NetBIOS name; FAIL when it and another
/// run now; WARN when one of them has not run yet. Returns (status, detail, fix).
pub(super) fn conflict(
    pod: &HostPod,
    spec: &str,
    all: &[HostPod],
    fixes: &Fixes,
) -> Option<(Status, String, String)> {
    let others: Vec<&HostPod> = all
        .iter()
        .filter(|o| o.subject != pod.subject && o.netbios == pod.netbios)
        .filter(|o| o.specs.iter().any(|s| s == spec))
        .collect();
    if others.is_empty() {
        return None;
    }
    let name = &pod.netbios;
    let running_others: Vec<&str> = others
        .iter()
        .filter(|o| o.running)
        .map(|o| o.subject.as_str())
        .collect();
    let (status, detail) = if pod.running && !running_others.is_empty() {
        (
            Status::Fail,
            format!(
                "{} running pods using {spec} share host name {name} (NetBIOS names are the first {NETBIOS_LENGTH} characters of the host name): {} and {}; only one can use the gMSA at a time, Kerberos and the secure channel break for the others",
                running_others.len() + 1,
                pod.subject,
                running_others.join(", ")
            ),
        )
    } else {
        let list: Vec<&str> = others.iter().map(|o| o.subject.as_str()).collect();
        (
            Status::Warn,
            format!(
                "shares host name {name} (NetBIOS names are the first {NETBIOS_LENGTH} characters of the host name) with {} using {spec}, but they do not run at the same time yet (Pending pods never ran): once they do, only one can use the gMSA",
                list.join(", ")
            ),
        )
    };
    let from_pod_names = !pod.fixed || others.iter().any(|o| !o.fixed);
    let distinct = format!(
        "give each pod a spec.hostname that differs in its first {NETBIOS_LENGTH} characters"
    );
    let fix = match (from_pod_names, fixes.install(InstallFix::RandomHostname)) {
        (true, Some(random)) => format!(
            "{random} (random host names for GMSA pods without spec.hostname), or {distinct}"
        ),
        (true, None) => format!(
            "{distinct}, or shorten the workload's name so its pods' names differ there (policy mode cannot give random host names)"
        ),
        (false, _) => distinct,
    };
    Some((status, detail, fix))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use serde_json::json;

    use super::super::fixes::tests::{accepted_by_install, install_commands, modes};
    use super::*;

    const SPEC: &str = "gmsa-webapp1";

    fn pod(name: &str, hostname: Option<&str>, phase: &str) -> HostPod {
        let mut value = json!({"metadata": {"name": name}, "spec": {}, "status": {"phase": phase}});
        if let Some(h) = hostname {
            value["spec"]["hostname"] = json!(h);
        }
        HostPod::live(format!("default/{name}"), &value, vec![SPEC.into()]).unwrap()
    }

    fn webhook() -> Fixes {
        modes()[0].clone()
    }

    #[test]
    fn netbios_names_are_the_first_15_characters() {
        let pod = json!({"metadata": {"name": "iis-auth-7776966999-n5nzr"}, "spec": {}});
        assert_eq!(netbios_name(&pod), "IIS-AUTH-777696");
        let pod = json!({"metadata": {"name": "x"}, "spec": {"hostname": "web-1"}});
        assert_eq!(netbios_name(&pod), "WEB-1");
    }

    #[test]
    fn replicas_whose_names_differ_in_15_characters_are_fine() {
        let all = [
            pod("web-7f9c-abcde", None, "Running"),
            pod("web-7f9c-fghij", None, "Running"),
        ];
        for p in &all {
            assert!(conflict(p, SPEC, &all, &webhook()).is_none(), "{p:?}");
        }
    }

    #[test]
    fn the_same_spec_hostname_while_running_fails() {
        let all = [
            pod("iis-a", Some("iis"), "Running"),
            pod("iis-b", Some("iis"), "Running"),
        ];
        let (status, detail, fix) = conflict(&all[0], SPEC, &all, &webhook()).unwrap();
        assert_eq!(status, Status::Fail);
        assert!(
            detail.starts_with("2 running pods using gmsa-webapp1 share host name IIS"),
            "{detail}"
        );
        assert!(
            detail.contains("default/iis-a and default/iis-b"),
            "{detail}"
        );
        // RANDOM_HOSTNAME leaves a set spec.hostname alone: it is no fix here.
        assert!(!fix.contains("--random-hostname"), "{fix}");
    }

    #[test]
    fn the_same_hostname_while_pending_warns() {
        let all = [
            pod("iis-a", Some("iis"), "Pending"),
            pod("iis-b", Some("iis"), "Running"),
        ];
        for p in &all {
            let (status, detail, _) = conflict(p, SPEC, &all, &webhook()).unwrap();
            assert_eq!(status, Status::Warn, "{detail}");
            assert!(
                detail.contains("do not run at the same time yet"),
                "{detail}"
            );
        }
    }

    #[test]
    fn names_that_differ_only_after_15_characters_are_shared() {
        let all = [
            pod("with-creds-5c7b9d8f6-abcde", None, "Running"),
            pod("with-creds-5c7b9d8f6-fghij", None, "Running"),
        ];
        let (status, detail, fix) = conflict(&all[1], SPEC, &all, &webhook()).unwrap();
        assert_eq!(status, Status::Fail);
        assert!(detail.contains("WITH-CREDS-5C7B"), "{detail}");
        assert!(fix.contains("--random-hostname"), "{fix}");
    }

    #[test]
    fn other_specs_and_finished_pods_do_not_count() {
        let mut other = pod("iis-b", Some("iis"), "Running");
        other.specs = vec!["gmsa-other".into()];
        let all = [pod("iis-a", Some("iis"), "Running"), other];
        assert!(conflict(&all[0], SPEC, &all, &webhook()).is_none());
        let done = json!({"metadata": {"name": "x"}, "spec": {}, "status": {"phase": "Succeeded"}});
        assert!(HostPod::live("default/x".into(), &done, vec![]).is_none());
    }

    /// Every fix this row can print, in each mode, is an install command that mode accepts.
    #[test]
    fn every_hostname_fix_is_accepted_by_install_in_its_mode() {
        let cases = [
            [
                pod("a", Some("iis"), "Running"),
                pod("b", Some("iis"), "Running"),
            ],
            [
                pod("iis-frontend-00a", None, "Running"),
                pod("iis-frontend-00b", None, "Pending"),
            ],
            [
                pod("iis-frontend-00a", None, "Running"),
                pod("c", Some("iis-frontend-00z"), "Running"),
            ],
        ];
        for fixes in modes() {
            let mut commands = 0;
            for all in &cases {
                for p in all {
                    let (_, _, fix) = conflict(p, SPEC, all, &fixes).unwrap();
                    for command in install_commands(&fix) {
                        assert_eq!(accepted_by_install(&command), fixes.admission, "{fix}");
                        commands += 1;
                    }
                }
            }
            if fixes.install(InstallFix::RandomHostname).is_some() {
                assert!(commands > 0, "{fixes:?}: no install fix offered");
            }
        }
    }
}
