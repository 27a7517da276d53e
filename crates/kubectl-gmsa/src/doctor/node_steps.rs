//! `--node-steps`: the Kubernetes documentation's node-side troubleshooting steps, as
//! `kubectl exec` command lines filled in for a pod and its credential spec's domain.

use std::collections::BTreeMap;

use gmsa_core::CredentialSpec;
use gmsa_deploy::names;

use super::fixes::{Fixes, InstallFix};
use super::pods::CheckedPod;

/// The documentation's troubleshooting steps, as command lines for `pod` (placeholders when
/// there is none).
pub(super) fn node_steps(
    pod: Option<&CheckedPod>,
    specs: &BTreeMap<String, CredentialSpec>,
    fixes: &Fixes,
) -> String {
    let ns = pod.map_or("<namespace>".to_string(), |p| p.namespace.clone());
    let pod_name = pod.map_or("<pod>".to_string(), |p| p.name.clone());
    let container = pod
        .and_then(|p| p.container.clone())
        .map(|c| format!(" -c {c}"))
        .unwrap_or_default();
    let spec = pod.and_then(|p| p.spec.clone());
    let domain = spec
        .as_ref()
        .and_then(|s| specs.get(s))
        .and_then(|s| s.contents())
        .and_then(|c| {
            c.value()["DomainJoinConfig"]["DnsName"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "<domain>".to_string());
    let exec = format!("kubectl exec -n {ns} {pod_name}{container} --");
    let system_ns = names::DEFAULT_NAMESPACE;
    let name = &fixes.name;
    let node_setup = fixes.install(InstallFix::NodeSetup).unwrap_or_default();
    format!(
        "Node-side checks for pod {ns}/{pod_name}{spec_note} (from the Kubernetes documentation):

1. The credential spec reached the container (an error such as 1722 RPC_S_SERVER_UNAVAILABLE means it did not):
   {exec} nltest.exe /parentdomain
2. The pod reaches the domain controller and DNS works:
   {exec} nslookup {domain}
3. The secure channel with the domain is up (expect `0x0 NERR_Success`):
   {exec} nltest.exe /query
4. If not, reset it:
   {exec} nltest.exe /sc_reset:{domain}
5. SMB shares reached by host name need EnableCompartmentNamespace=1 on the node (recreate pods after setting it).
   `{node_setup}` sets it on every Windows node; to read it on the pod's node:
   kubectl get pods -n {system_ns} -l {label}=node-setup -o wide --field-selector spec.nodeName=$(kubectl get pod -n {ns} {pod_name} -o jsonpath='{{.spec.nodeName}}')
   kubectl exec -n {system_ns} <node-setup pod from above> -- reg.exe query \"{key}\" /v {value}
6. If resetting the secure channel fixes it, make it automatic with a postStart hook in the container:
        lifecycle:
          postStart:
            exec:
              command: [\"powershell.exe\",\"-command\",\"do {{ Restart-Service -Name netlogon }} while ( $($Result = (nltest.exe /query); if ($Result -like '*0x0 NERR_Success*') {{return $true}} else {{return $false}}) -eq $false)\"]
   If it does not, check the credential spec: kubectl get gmsacredentialspec {spec_name} -o yaml | kubectl gmsa credspec validate -
   (webhook: {name})
",
        spec_note = spec.as_ref().map(|s| format!(", credential spec {s}")).unwrap_or_default(),
        label = names::LABEL_COMPONENT,
        key = names::HNS_STATE_KEY,
        value = names::COMPARTMENT_NAMESPACE_VALUE,
        spec_name = spec.as_deref().unwrap_or("<spec>"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::fixes::tests::{accepted_by_install, install_commands, modes};
    use super::*;
    use serde_json::json;

    #[test]
    fn node_steps_fill_in_the_pod_and_domain() {
        let mut specs = BTreeMap::new();
        specs.insert(
            "gmsa-webapp1".to_string(),
            CredentialSpec::new(
                "gmsa-webapp1",
                json!({"DomainJoinConfig": {"DnsName": "contoso.com"}}),
            ),
        );
        let pod = CheckedPod {
            namespace: "web".into(),
            name: "iis-1".into(),
            container: Some("iis".into()),
            spec: Some("gmsa-webapp1".into()),
        };
        let text = node_steps(Some(&pod), &specs, &modes()[0]);
        assert!(
            text.contains("kubectl exec -n web iis-1 -c iis -- nltest.exe /sc_reset:contoso.com"),
            "{text}"
        );
        assert!(text.contains("nltest.exe /parentdomain"));
        assert!(text.contains("EnableCompartmentNamespace"));
        assert!(text.contains("Restart-Service -Name netlogon"));
    }

    #[test]
    fn the_node_setup_line_is_accepted_by_install_in_each_mode() {
        for fixes in modes() {
            let text = node_steps(None, &BTreeMap::new(), &fixes);
            let commands = install_commands(&text);
            assert_eq!(commands.len(), 1, "{text}");
            assert_eq!(accepted_by_install(&commands[0]), fixes.admission, "{text}");
            assert!(commands[0].contains("--node-setup"), "{text}");
        }
    }
}
