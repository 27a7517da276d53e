//! What `tests/doctor_ad.rs` shares between its steps: running the binary against the DC and
//! the cluster, the credential specs and nodes it applies, and assertions on findings.

#![allow(dead_code, clippy::unwrap_used)] // tests may panic

use std::path::{Path, PathBuf};
use std::process::Command;

use gmsa_testkit::real_cluster::RealCluster;
use gmsa_testkit::samba::{self, SambaDc};
use serde_json::{json, Value};

pub(crate) struct Env<'a> {
    pub(crate) dc: &'a SambaDc,
    pub(crate) cluster: &'a RealCluster,
    pub(crate) dir: PathBuf,
}

pub(crate) struct Out {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Env<'_> {
    pub(crate) fn gmsa(&self, args: &[&str]) -> Out {
        let out = Command::new(env!("CARGO_BIN_EXE_kubectl-gmsa"))
            .args(args)
            .env("KUBECONFIG", self.cluster.admin_kubeconfig())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .output()
            .unwrap();
        let out = Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let password = self.dc.admin_password();
        assert!(
            !out.stdout.contains(password) && !out.stderr.contains(password),
            "{args:?} printed the password"
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        out
    }

    pub(crate) fn password_file(&self) -> String {
        self.dir.join("ad-password").display().to_string()
    }

    /// The connection flags, with the right password file and CA unless overridden.
    pub(crate) fn connection(&self, password_file: &str, ca: &Path) -> Vec<String> {
        vec![
            "--bind-upn".into(),
            self.dc.admin_upn(),
            "--password-file".into(),
            password_file.into(),
            "--ca-file".into(),
            ca.display().to_string(),
        ]
    }

    /// `doctor --ad LDAPS --ad-only -o json EXTRA`: the exit status and the findings.
    pub(crate) fn doctor(&self, extra: &[&str]) -> (i32, Vec<Value>) {
        let out = self.doctor_raw(&self.dc.ldaps_url(), &self.password_file(), extra);
        let report: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor printed no JSON ({e}):\n{}\n{}",
                out.stdout, out.stderr
            )
        });
        (out.code, report["findings"].as_array().unwrap().clone())
    }

    pub(crate) fn doctor_raw(&self, url: &str, password_file: &str, extra: &[&str]) -> Out {
        let mut with_json = vec!["-o", "json"];
        with_json.extend_from_slice(extra);
        self.doctor_any(url, password_file, &with_json)
    }

    pub(crate) fn doctor_any(&self, url: &str, password_file: &str, extra: &[&str]) -> Out {
        let mut args: Vec<String> = vec!["doctor".into(), "--ad".into(), url.into()];
        args.extend(self.connection(password_file, self.dc.ca_path()));
        args.extend(extra.iter().map(|s| s.to_string()));
        self.gmsa(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub(crate) fn apply(&self, manifest: &Value) {
        self.cluster
            .apply(&manifest.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A GMSACredentialSpec for WebApp1 with the given domain facts, scopes and CCG plugin
/// (GUID without braces, input).
pub(crate) fn credspec(
    name: &str,
    domain: (&str, &str, &str, &str),
    scopes: &[&str],
    ccg: Option<(&str, &str)>,
) -> Value {
    let (dns, netbios, guid, sid) = domain;
    let mut ad = json!({
        "GroupManagedServiceAccounts": scopes.iter()
            .map(|s| json!({"Name": "WebApp1", "Scope": s})).collect::<Vec<_>>()
    });
    if let Some((guid, input)) = ccg {
        ad["HostAccountConfig"] = json!({
            "PluginGUID": format!("{{{guid}}}"),
            "PluginInput": input,
            "PortableCcgVersion": "1"
        });
    }
    json!({
        "apiVersion": "windows.k8s.io/v1",
        "kind": "GMSACredentialSpec",
        "metadata": {"name": name},
        "credspec": {
            "ActiveDirectoryConfig": ad,
            "CmsPlugins": ["ActiveDirectory"],
            "DomainJoinConfig": {
                "DnsName": dns, "DnsTreeName": dns, "Guid": guid,
                "MachineAccountName": "WebApp1", "NetBiosName": netbios, "Sid": sid
            }
        }
    })
}

pub(crate) const CONTOSO: (&str, &str, &str, &str) = (
    samba::DNS_NAME,
    samba::NETBIOS_NAME,
    samba::DOMAIN_GUID,
    samba::DOMAIN_SID,
);

pub(crate) fn node(name: &str, os: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"kubernetes.io/os": os}}})
}

pub(crate) use crate::support::{expect, find};

pub(crate) fn fix(finding: &Value) -> &str {
    finding["fix"].as_str().unwrap_or_default()
}
