//! `doctor --ad`: the directory side of GMSA, checked from any shell that reaches a domain
//! controller. The credential specs and Windows nodes come from the cluster; the facts come
//! from Active Directory over LDAPS or StartTLS (`gmsa_ad::inspect`); the verdicts are
//! `gmsa_ad::readiness`'s. This module only wires them to the flags and the report.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};
use gmsa_ad::readiness::{self, Check, SpecClaims, Verdict};
use gmsa_ad::{inspect, Directory, DirectoryConfig};
use gmsa_core::names as core_names;
use gmsa_kube::credential_spec_resource;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DynamicObject, ListParams};
use kube::Client;
use serde_json::Value;

use super::args::AdArgs;
use super::report::{Finding, Status};
use crate::directory::{connection, describe_error, Flags};

/// The label every Windows node carries.
const WINDOWS_NODES: &str = "kubernetes.io/os=windows";

/// The connection, ready before anything is read: bad flags and password files fail first.
pub struct Prepared {
    config: DirectoryConfig,
    flags: Flags,
}

/// Reads the connection flags and the password file.
pub fn prepare(args: &AdArgs) -> anyhow::Result<Option<Prepared>> {
    let Some(url) = &args.url else {
        return Ok(None);
    };
    let (config, flags) = connection(&args.connection, url, "--ad")?;
    Ok(Some(Prepared { config, flags }))
}

/// The directory checks as doctor findings. An error is something that kept the checks from
/// running (the caller exits 2); a failed check is a finding.
pub async fn examine(args: &AdArgs, prepared: &Prepared) -> anyhow::Result<Vec<Finding>> {
    let client = crate::cluster::client()
        .await
        .context("cannot connect to the cluster: check KUBECONFIG or your kubectl context")?;
    let mut findings = Vec::new();
    let mut claims = Vec::new();
    for (name, contents) in credential_specs(&client, args.credspec.as_deref()).await? {
        match SpecClaims::from_contents(&name, &contents) {
            Ok(spec) => claims.push(spec),
            Err(reason) => findings.push(Finding {
                status: Status::Fail,
                check: readiness::CHECK_ACCOUNT.into(),
                subject: name.clone(),
                detail: format!("cannot read the spec: {reason}"),
                fix: Some(format!("kubectl gmsa credspec validate, then fix {name}")),
            }),
        }
    }
    let nodes = windows_nodes(&client, args.node.as_deref()).await?;

    let describe = |e| anyhow!(describe_error(e, &prepared.flags));
    let mut directory = Directory::connect(&prepared.config)
        .await
        .map_err(describe)?;
    let read = inspect::read_all(&mut directory, &claims, &nodes).await;
    directory.close().await;
    let (domain, keys, states) = read.map_err(describe)?;

    findings.push(finding(readiness::kds_root_key(&domain, &keys, now())));
    for spec in &claims {
        let state = states.get(&spec.spec).cloned().unwrap_or_default();
        findings.extend(
            readiness::evaluate(spec, &domain, &state)
                .into_iter()
                .map(finding),
        );
    }
    Ok(findings)
}

fn finding(check: Check) -> Finding {
    Finding {
        status: match check.verdict {
            Verdict::Pass => Status::Pass,
            Verdict::Warn => Status::Warn,
            Verdict::Fail => Status::Fail,
        },
        check: check.name.into(),
        subject: check.subject,
        detail: check.detail,
        fix: check.fix,
    }
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    readiness::filetime_of_unix(i64::try_from(secs).unwrap_or(i64::MAX / 20_000_000))
}

/// The specs' names and `credspec` contents: all of them, or the one asked for.
async fn credential_specs(
    client: &Client,
    only: Option<&str>,
) -> anyhow::Result<Vec<(String, Value)>> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &credential_spec_resource());
    let items = match only {
        Some(name) => vec![api
            .get_opt(name)
            .await
            .with_context(|| format!("cannot read GMSACredentialSpec {name}"))?
            .ok_or_else(|| {
                anyhow!("no GMSACredentialSpec {name} in the cluster (--credspec); kubectl get gmsacredentialspecs lists them")
            })?],
        None => {
            api.list(&ListParams::default())
                .await
                .context("cannot list GMSACredentialSpecs: is the CRD installed? (kubectl gmsa install --apply)")?
                .items
        }
    };
    Ok(items
        .into_iter()
        .map(|item| {
            let name = item.metadata.name.clone().unwrap_or_default();
            let contents = item
                .data
                .get(core_names::CREDSPEC_KEY)
                .cloned()
                .unwrap_or(Value::Null);
            (name, contents)
        })
        .collect())
}

/// The Windows nodes' names, or the one asked for.
async fn windows_nodes(client: &Client, only: Option<&str>) -> anyhow::Result<Vec<String>> {
    let api: Api<Node> = Api::all(client.clone());
    if let Some(name) = only {
        api.get_opt(name)
            .await
            .with_context(|| format!("cannot read node {name}"))?
            .ok_or_else(|| anyhow!("no node {name} in the cluster (--node); kubectl get nodes -l {WINDOWS_NODES} lists the Windows nodes"))?;
        return Ok(vec![name.to_string()]);
    }
    let nodes = api
        .list(&ListParams::default().labels(WINDOWS_NODES))
        .await
        .context("cannot list the nodes")?;
    Ok(nodes
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_become_findings_with_their_fix() {
        let found = finding(Check {
            name: readiness::CHECK_SPN,
            subject: "gmsa-webapp1".into(),
            verdict: Verdict::Fail,
            detail: "held twice".into(),
            fix: Some("setspn -D HTTP/x legacy".into()),
        });
        assert_eq!(found.status, Status::Fail);
        assert_eq!(found.check, "ad-spn");
        assert_eq!(found.fix.as_deref(), Some("setspn -D HTTP/x legacy"));
    }
}
