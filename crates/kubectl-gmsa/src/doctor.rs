//! `doctor`: what stands between a Windows pod and its gMSA, checked from the cluster side,
//! one row per finding with a one-line fix; and, on request, the node-side steps of the
//! documentation's troubleshooting section, filled in for a pod.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::process::ExitCode;

use base64::Engine as _;
use clap::{Args, ValueEnum};
use gmsa_core::names as core_names;
use gmsa_core::pod::Pod;
use gmsa_core::CredentialSpec;
use gmsa_deploy::names;
use gmsa_tls::{certificate_validity, pem_certificates, verify_serving_chain};
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use rustls::pki_types::CertificateDer;
use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::apply::{api, display_name};
use crate::cluster::{credential_spec_resource, kind};
use crate::probe;

pub const DOCTOR_EXAMPLES: &str = "\
Checks, each a row PASS, WARN or FAIL with a fix: the CRD and its versions; the webhook
configurations; that their caBundle verifies the webhook's serving certificate (the Secret's,
or what a URL-registered webhook presents) and when it expires (WARN under 30 days); that the
webhook answers /readyz and /info (through the API server's service proxy); that every
GMSACredentialSpec is well formed; and for each pod that names a credential spec: the spec
exists, its service account may `use` it, the contents were inlined and still match, the pod
targets Windows nodes, and no other live pod with the same spec shares its NetBIOS host name
(the first 15 characters of its host name).

Exit status: 0 when everything passes, 1 when the worst finding is a warning, 2 when a check
fails (or the cluster cannot be reached).

Examples:
  kubectl gmsa doctor
  kubectl gmsa doctor -n web --pod iis-7776966999-n5nzr --node-steps
  kubectl gmsa doctor -o json";

/// `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Namespace of the pods to check [default: all namespaces; `default` with --pod].
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Check only this pod.
    #[arg(long, value_name = "NAME")]
    pub pod: Option<String>,
    /// Print the documentation's node-side checks as kubectl exec command lines.
    #[arg(long = "node-steps")]
    pub node_steps: bool,
    /// Name given to install (its webhook configurations are <NAME>-admission).
    #[arg(long, default_value = names::DEFAULT_NAME)]
    pub name: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: DoctorFormat,
    /// Last, because its help heading holds for the arguments after it.
    #[command(flatten)]
    pub ad: crate::doctor_ad::AdArgs,
}

/// How findings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DoctorFormat {
    Table,
    Json,
}

/// How bad a finding is; the worst one is the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        })
    }
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub status: Status,
    /// A stable identifier: `crd`, `webhook-configurations`, `certificate`, `certificate-expiry`,
    /// `webhook-ready`, `reference-webhook`, `credspec`, `pod-spec-exists`, `pod-grant`, `pod-contents`,
    /// `pod-windows`, `pod-hostname`, `pod`.
    pub check: String,
    /// What it is about (`default/iis`, `gmsa-webapp1`).
    pub subject: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Default)]
struct Report {
    findings: Vec<Finding>,
}

impl Report {
    fn add(
        &mut self,
        status: Status,
        check: &str,
        subject: &str,
        detail: String,
        fix: Option<String>,
    ) {
        self.findings.push(Finding {
            status,
            check: check.into(),
            subject: subject.into(),
            detail,
            fix,
        });
    }
    fn pass(&mut self, check: &str, subject: &str, detail: String) {
        self.add(Status::Pass, check, subject, detail, None);
    }
    fn warn(&mut self, check: &str, subject: &str, detail: String, fix: String) {
        self.add(Status::Warn, check, subject, detail, Some(fix));
    }
    fn fail(&mut self, check: &str, subject: &str, detail: String, fix: String) {
        self.add(Status::Fail, check, subject, detail, Some(fix));
    }
    fn worst(&self) -> Status {
        self.findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Pass)
    }
}

/// `doctor`.
pub fn doctor(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let runtime = crate::cluster::runtime()?;
    let directory = crate::doctor_ad::prepare(&args.ad)?;
    let (mut report, steps) = if args.ad.ad_only {
        (Report::default(), None)
    } else {
        runtime.block_on(examine(args))
    };
    if let Some(directory) = &directory {
        let findings = runtime.block_on(crate::doctor_ad::examine(&args.ad, directory))?;
        report.findings.extend(findings);
    }
    match args.output {
        DoctorFormat::Json => {
            let text = serde_json::to_string_pretty(&json!({
                "findings": report.findings,
                "worst": report.worst(),
                "nodeSteps": steps,
            }))?;
            println!("{text}");
        }
        DoctorFormat::Table => {
            print!("{}", table(&report.findings));
            if let Some(steps) = steps {
                println!();
                print!("{steps}");
            }
        }
    }
    if directory.is_some() {
        return Ok(crate::doctor_ad::exit_code(&report.findings));
    }
    Ok(match report.worst() {
        Status::Pass => ExitCode::SUCCESS,
        Status::Warn => ExitCode::from(1),
        Status::Fail => ExitCode::from(2),
    })
}

/// The findings as aligned rows, each fix on its own indented line.
pub fn table(findings: &[Finding]) -> String {
    let width = findings
        .iter()
        .map(|f| f.check.len() + f.subject.len() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for f in findings {
        let what = if f.subject.is_empty() {
            f.check.clone()
        } else {
            format!("{} {}", f.check, f.subject)
        };
        out.push_str(&format!("{}  {what:<width$}  {}\n", f.status, f.detail));
        if let Some(fix) = &f.fix {
            out.push_str(&format!("      fix: {fix}\n"));
        }
    }
    let count = |s| findings.iter().filter(|f| f.status == s).count();
    out.push_str(&format!(
        "{} passed, {} warnings, {} failed\n",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail)
    ));
    out
}

async fn examine(args: &DoctorArgs) -> (Report, Option<String>) {
    let mut report = Report::default();
    let client = match crate::cluster::client().await {
        Ok(client) => client,
        Err(e) => {
            report.fail(
                "cluster",
                "",
                format!("{e}: {}", e.root_cause()),
                "check KUBECONFIG and `kubectl cluster-info`".into(),
            );
            return (report, None);
        }
    };
    match crate::cluster::cluster_version(&client).await {
        Ok(v) => report.pass("cluster", "", format!("Kubernetes {v}")),
        Err(e) => {
            report.fail(
                "cluster",
                "",
                format!("{e}: {}", e.root_cause()),
                "check KUBECONFIG and `kubectl cluster-info`".into(),
            );
            return (report, None);
        }
    }
    check_crd(&client, &mut report).await;
    check_webhook(
        &client,
        &names::webhook_configuration(&args.name),
        &mut report,
    )
    .await;
    check_reference(&client, &mut report).await;
    let specs = check_credspecs(&client, &mut report).await;
    let pods = check_pods(&client, args, &specs, &mut report).await;
    let steps = args
        .node_steps
        .then(|| node_steps(pods.first(), &specs, &args.name));
    (report, steps)
}

/// Pods are read, never rendered, so `gmsa_deploy::KINDS` does not list them.
const POD: gmsa_deploy::KindInfo = gmsa_deploy::KindInfo {
    api_version: "v1",
    kind: "Pod",
    plural: "pods",
    namespaced: true,
};

async fn get(
    client: &Client,
    info: &gmsa_deploy::KindInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<Value>, String> {
    match api(client, info, ns).get_opt(name).await {
        Ok(found) => Ok(found.and_then(|o| serde_json::to_value(o).ok())),
        Err(e) => Err(format!("cannot read {}: {e}", display_name(info, name))),
    }
}

async fn check_crd(client: &Client, report: &mut Report) {
    let name = gmsa_deploy::crd::crd_name();
    let info = kind("apiextensions.k8s.io/v1", "CustomResourceDefinition");
    let install = "kubectl gmsa install --apply".to_string();
    match get(client, info, None, &name).await {
        Err(e) => report.fail(
            "crd",
            &name,
            e,
            "check your permissions: `kubectl auth can-i get crd`".into(),
        ),
        Ok(None) => report.fail(
            "crd",
            &name,
            "the CRD is not installed: no GMSACredentialSpec can exist".into(),
            install,
        ),
        Ok(Some(crd)) => {
            let versions = crd["spec"]["versions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let find = |v: &str| versions.iter().find(|x| x["name"] == v).cloned();
            match (find(core_names::VERSION), find(core_names::VERSION_ALPHA)) {
                (Some(v1), Some(alpha)) if v1["served"] == true && v1["storage"] == true && alpha["served"] == true => {
                    report.pass("crd", &name, "serves v1 (storage) and v1alpha1".into());
                }
                (Some(v1), _) if v1["served"] == true => report.warn(
                    "crd",
                    &name,
                    "v1 is served but v1alpha1 is not (or v1 is not the storage version): clients still on v1alpha1 fail".into(),
                    install,
                ),
                _ => report.fail("crd", &name, "v1 is not served: the webhook reads windows.k8s.io/v1".into(), install),
            }
        }
    }
}

/// A reference webhook still registered beside ours: pods go through both.
async fn check_reference(client: &Client, report: &mut Report) {
    match crate::reference::find(client).await {
        Ok(None) => {}
        Ok(Some(found)) => {
            let subject = found
                .objects
                .first()
                .map(|o| o.display())
                .unwrap_or_default();
            report.warn(
                "reference-webhook",
                &subject,
                found.describe(),
                "kubectl gmsa install --apply --retire-reference".into(),
            );
        }
        Err(e) => report.warn(
            "reference-webhook",
            "",
            format!("cannot look for a reference webhook: {e:#}"),
            "check your permissions: `kubectl auth can-i list mutatingwebhookconfigurations`"
                .into(),
        ),
    }
}

/// Where the API server sends admissions.
enum Endpoint {
    Service {
        namespace: String,
        name: String,
        port: i64,
    },
    Url(String),
}

async fn check_webhook(client: &Client, name: &str, report: &mut Report) {
    let install = "kubectl gmsa install --apply".to_string();
    let mutating = get(
        client,
        kind(
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
        ),
        None,
        name,
    )
    .await;
    let validating = get(
        client,
        kind(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
        ),
        None,
        name,
    )
    .await;
    let (mutating, validating) = match (mutating, validating) {
        (Ok(Some(m)), Ok(Some(v))) => (m, v),
        (Err(e), _) | (_, Err(e)) => {
            report.fail(
                "webhook-configurations",
                name,
                e,
                "check your permissions".into(),
            );
            return;
        }
        (m, v) => {
            let missing: Vec<&str> = [
                ("MutatingWebhookConfiguration", &m),
                ("ValidatingWebhookConfiguration", &v),
            ]
            .into_iter()
            .filter(|(_, x)| matches!(x, Ok(None)))
            .map(|(k, _)| k)
            .collect();
            report.fail(
                "webhook-configurations",
                name,
                format!(
                    "{} {name} missing: pods are not mutated or validated",
                    missing.join(" and ")
                ),
                install,
            );
            return;
        }
    };
    let hooks: Vec<Value> = mutating["webhooks"]
        .as_array()
        .into_iter()
        .chain(validating["webhooks"].as_array())
        .flatten()
        .cloned()
        .collect();
    let path_of = |h: &Value| -> String {
        let config = &h["clientConfig"];
        config["service"]["path"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| {
                config["url"]
                    .as_str()
                    .and_then(|u| probe::target(u).ok())
                    .map(|t| t.path)
            })
            .unwrap_or_default()
    };
    let paths: Vec<String> = hooks.iter().map(path_of).collect();
    let missing: Vec<&str> = [core_names::paths::MUTATE, core_names::paths::VALIDATE]
        .into_iter()
        .filter(|p| !paths.iter().any(|x| x == p))
        .collect();
    if !missing.is_empty() {
        report.fail(
            "webhook-configurations",
            name,
            format!("no webhook calls {}", missing.join(", ")),
            install,
        );
        return;
    }
    let first = &mutating["webhooks"][0];
    let policy = first["failurePolicy"].as_str().unwrap_or("Fail");
    report.pass(
        "webhook-configurations",
        name,
        format!(
            "{} webhooks ({}), failurePolicy {policy}",
            hooks.len(),
            paths.join(", ")
        ),
    );

    let config = &first["clientConfig"];
    let endpoint = match (config["service"].is_object(), config["url"].as_str()) {
        (true, _) => Endpoint::Service {
            namespace: config["service"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            name: config["service"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            port: config["service"]["port"].as_i64().unwrap_or(443),
        },
        (false, Some(url)) => Endpoint::Url(url.to_string()),
        _ => {
            report.fail(
                "webhook-configurations",
                name,
                "clientConfig has neither a service nor a URL".into(),
                install,
            );
            return;
        }
    };
    let bundle = config["caBundle"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let reinstall_certs = "kubectl gmsa install --apply --rotate-certs".to_string();

    // The serving certificate, and whether the webhook answers.
    let (chain, server_name) = match &endpoint {
        Endpoint::Service {
            namespace,
            name: service,
            ..
        } => {
            let deployment = get(
                client,
                kind("apps/v1", "Deployment"),
                Some(namespace),
                service,
            )
            .await
            .ok()
            .flatten();
            let secret_name = deployment
                .as_ref()
                .and_then(|d| d["spec"]["template"]["spec"]["volumes"].as_array().cloned())
                .and_then(|vols| vols.into_iter().find(|v| v["name"] == names::TLS_VOLUME))
                .and_then(|v| v["secret"]["secretName"].as_str().map(str::to_owned))
                .unwrap_or_else(|| names::tls_secret(service));
            let secret = get(client, kind("v1", "Secret"), Some(namespace), &secret_name).await;
            let cert = secret.ok().flatten().and_then(|s| {
                let b = s["data"][names::TLS_CERT_KEY].as_str()?.to_owned();
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).ok()?).ok()
            });
            let chain = match cert.as_deref().map(|pem| pem_certificates("tls.crt", pem)) {
                Some(Ok(chain)) => Some(chain),
                Some(Err(e)) => {
                    report.fail(
                        "certificate",
                        &format!("{namespace}/{secret_name}"),
                        e.to_string(),
                        reinstall_certs.clone(),
                    );
                    None
                }
                None => {
                    report.fail(
                        "certificate",
                        &format!("{namespace}/{secret_name}"),
                        "no tls.crt in the webhook's Secret".into(),
                        "kubectl gmsa install --apply".into(),
                    );
                    None
                }
            };
            (chain, format!("{service}.{namespace}.svc"))
        }
        Endpoint::Url(url) => match probe::target(url) {
            Ok(target) => {
                let host = target.host.clone();
                match tokio::task::spawn_blocking(move || {
                    probe::get(&target, core_names::paths::HEALTH)
                })
                .await
                {
                    Ok(Ok(answer)) => (Some(answer.chain), host),
                    Ok(Err(e)) => {
                        report.fail(
                            "certificate",
                            url,
                            format!("cannot fetch the certificate: {e}"),
                            "start the webhook, or fix the URL".into(),
                        );
                        (None, host)
                    }
                    Err(e) => {
                        report.fail("certificate", url, e.to_string(), "retry".into());
                        (None, host)
                    }
                }
            }
            Err(e) => {
                report.fail(
                    "webhook-configurations",
                    name,
                    e,
                    "fix clientConfig.url".into(),
                );
                (None, String::new())
            }
        },
    };
    if let Some(chain) = chain {
        check_certificate(
            &chain,
            bundle.as_deref(),
            &server_name,
            &reinstall_certs,
            report,
        );
    }
    check_ready(client, &endpoint, report).await;
}

fn check_certificate(
    chain: &[CertificateDer<'static>],
    bundle: Option<&str>,
    server_name: &str,
    fix: &str,
    report: &mut Report,
) {
    let now = OffsetDateTime::now_utc();
    match bundle {
        None => report.fail(
            "certificate",
            server_name,
            "the webhook configuration has no caBundle".into(),
            fix.into(),
        ),
        Some(bundle) => match verify_serving_chain(bundle, chain, server_name, now) {
            Ok(()) => report.pass(
                "certificate",
                server_name,
                "caBundle verifies the serving certificate".into(),
            ),
            Err(e) => report.fail(
                "certificate",
                server_name,
                format!("caBundle does not verify the serving certificate: {e}"),
                fix.into(),
            ),
        },
    }
    match chain.first().map(certificate_validity) {
        Some(Ok(v)) => {
            let left = v.not_after - now;
            let date = v.not_after.date();
            if left.is_negative() {
                report.fail(
                    "certificate-expiry",
                    server_name,
                    format!("expired on {date}"),
                    fix.into(),
                );
            } else if left < crate::certs::renew_before() {
                report.warn(
                    "certificate-expiry",
                    server_name,
                    format!("expires on {date}, in {} days", left.whole_days()),
                    fix.into(),
                );
            } else {
                report.pass(
                    "certificate-expiry",
                    server_name,
                    format!("expires on {date}, in {} days", left.whole_days()),
                );
            }
        }
        Some(Err(e)) => report.fail("certificate-expiry", server_name, e.to_string(), fix.into()),
        None => {}
    }
}

async fn check_ready(client: &Client, endpoint: &Endpoint, report: &mut Report) {
    let (subject, ready, info, fix) = match endpoint {
        Endpoint::Service {
            namespace,
            name,
            port,
        } => {
            let base = format!("/api/v1/namespaces/{namespace}/services/https:{name}:{port}/proxy");
            let get = |path: &str| {
                let request = http::Request::get(format!("{base}{path}")).body(Vec::new());
                async move {
                    let request = request.map_err(|e| e.to_string())?;
                    client
                        .request_text(request)
                        .await
                        .map_err(|e| e.to_string())
                }
            };
            let ready = get(core_names::paths::READYZ).await.map(|_| ());
            let info = get(core_names::paths::INFO).await.ok();
            (
                format!("{namespace}/{name}"),
                ready,
                info,
                format!("kubectl -n {namespace} get pods -l {}={} ; kubectl -n {namespace} logs deploy/{name}", names::LABEL_INSTANCE, name),
            )
        }
        Endpoint::Url(url) => {
            let result = match probe::target(url) {
                Ok(target) => tokio::task::spawn_blocking(move || {
                    let ready = probe::get(&target, core_names::paths::READYZ).and_then(|a| {
                        if a.status == 200 {
                            Ok(())
                        } else {
                            Err(format!("/readyz answered {}", a.status))
                        }
                    });
                    let info = probe::get(&target, core_names::paths::INFO)
                        .ok()
                        .map(|a| a.body);
                    (ready, info)
                })
                .await
                .unwrap_or_else(|e| (Err(e.to_string()), None)),
                Err(e) => (Err(e), None),
            };
            (
                url_base(url),
                result.0,
                result.1,
                "start the webhook at this URL, or fix clientConfig.url".into(),
            )
        }
    };
    match ready {
        Ok(()) => {
            let version = info
                .and_then(|body| {
                    body.find('{')
                        .and_then(|i| serde_json::from_str::<Value>(&body[i..]).ok())
                })
                .and_then(|v| v["version"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".into());
            report.pass(
                "webhook-ready",
                &subject,
                format!("/readyz answers; version {version}"),
            );
        }
        Err(e) => report.fail(
            "webhook-ready",
            &subject,
            format!("the webhook does not answer /readyz: {e}"),
            fix,
        ),
    }
}

/// `https://host:port` of a webhook URL, without its path.
fn url_base(url: &str) -> String {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    format!("https://{}", rest.split('/').next().unwrap_or(rest))
}

async fn check_credspecs(client: &Client, report: &mut Report) -> BTreeMap<String, CredentialSpec> {
    let resource = credential_spec_resource();
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &resource);
    let mut specs = BTreeMap::new();
    let list = match api.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(e) => {
            report.fail(
                "credspec",
                "",
                format!("cannot list credential specs: {e}"),
                "install the CRD: kubectl gmsa install --apply".into(),
            );
            return specs;
        }
    };
    let mut bad = 0;
    for item in list.items {
        let mut value = serde_json::to_value(&item).unwrap_or(Value::Null);
        value["apiVersion"] = json!(resource.api_version);
        value["kind"] = json!(core_names::KIND);
        let name = item.metadata.name.clone().unwrap_or_default();
        let problems = gmsa_core::credspec::validate(&value);
        if !problems.is_empty() {
            bad += 1;
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            report.fail(
                "credspec",
                &name,
                text.join("; "),
                format!("kubectl get gmsacredentialspec {name} -o yaml > {name}.yaml, fix it (kubectl gmsa credspec validate {name}.yaml), kubectl apply -f {name}.yaml"),
            );
        }
        if let Ok(spec) = CredentialSpec::from_resource(&value) {
            specs.insert(name, spec);
        }
    }
    if bad == 0 {
        report.pass(
            "credspec",
            "",
            format!(
                "{} credential spec{}, all well formed",
                specs.len(),
                if specs.len() == 1 { "" } else { "s" }
            ),
        );
    }
    specs
}

/// A pod worth checking, kept for the node steps.
struct CheckedPod {
    namespace: String,
    name: String,
    container: Option<String>,
    spec: Option<String>,
}

fn windows_targeted(pod: &Value) -> bool {
    let spec = &pod["spec"];
    if spec["nodeSelector"]["kubernetes.io/os"] == "windows" {
        return true;
    }
    let terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    !terms.is_empty()
        && terms.iter().all(|term| {
            term["matchExpressions"].as_array().is_some_and(|exprs| {
                exprs.iter().any(|e| {
                    e["key"] == "kubernetes.io/os"
                        && e["operator"] == "In"
                        && e["values"]
                            .as_array()
                            .is_some_and(|v| v.len() == 1 && v[0] == "windows")
                })
            })
        })
}

/// The NetBIOS computer name Windows derives from the pod's host name.
pub fn netbios_name(pod: &Value) -> String {
    let host = pod["spec"]["hostname"]
        .as_str()
        .filter(|h| !h.is_empty())
        .or_else(|| pod["metadata"]["name"].as_str())
        .unwrap_or_default();
    host.chars()
        .take(15)
        .collect::<String>()
        .to_ascii_uppercase()
}

fn is_live(pod: &Value) -> bool {
    !matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    ) && pod["metadata"]["deletionTimestamp"].is_null()
}

async fn check_pods(
    client: &Client,
    args: &DoctorArgs,
    specs: &BTreeMap<String, CredentialSpec>,
    report: &mut Report,
) -> Vec<CheckedPod> {
    let pods_api = |ns: Option<&str>| api(client, &POD, ns);
    let all: Vec<Value> = match pods_api(None).list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .filter_map(|p| serde_json::to_value(p).ok())
            .collect(),
        Err(e) => {
            report.fail(
                "pod",
                "",
                format!("cannot list pods: {e}"),
                "run doctor as a user who may list pods".into(),
            );
            return Vec::new();
        }
    };
    let mentions = |p: &Value| Pod::from_json(&p.to_string()).is_ok_and(|pod| pod.mentions_gmsa());
    let selected: Vec<&Value> = match &args.pod {
        Some(name) => {
            let ns = args.namespace.as_deref().unwrap_or("default");
            match all.iter().find(|p| {
                p["metadata"]["name"] == name.as_str() && p["metadata"]["namespace"] == ns
            }) {
                Some(p) => vec![p],
                None => {
                    report.fail(
                        "pod",
                        &format!("{ns}/{name}"),
                        "no such pod".into(),
                        format!("kubectl get pods -n {ns}"),
                    );
                    return Vec::new();
                }
            }
        }
        None => all
            .iter()
            .filter(|p| {
                args.namespace
                    .as_deref()
                    .is_none_or(|ns| p["metadata"]["namespace"] == ns)
            })
            .filter(|p| mentions(p))
            .collect(),
    };
    if selected.is_empty() {
        report.pass("pod", "", "no pod names a credential spec".into());
        return Vec::new();
    }
    // NetBIOS names of live pods by credential spec, across the cluster.
    let mut hostnames: HashMap<(String, String), Vec<String>> = HashMap::new();
    for p in all.iter().filter(|p| is_live(p)) {
        let Ok(pod) = Pod::from_json(&p.to_string()) else {
            continue;
        };
        let mut names: Vec<String> = pod
            .places()
            .filter_map(|pl| pl.options.gmsa_credential_spec_name.clone())
            .collect();
        names.sort();
        names.dedup();
        for spec in names {
            hostnames
                .entry((spec, netbios_name(p)))
                .or_default()
                .push(format!(
                    "{}/{}",
                    p["metadata"]["namespace"].as_str().unwrap_or_default(),
                    pod.name()
                ));
        }
    }
    let mut reviews: HashMap<(String, String, String), Review> = HashMap::new();
    let mut checked = Vec::new();
    for p in selected {
        let ns = p["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let Ok(pod) = Pod::from_json(&p.to_string()) else {
            continue;
        };
        let subject = format!("{ns}/{}", pod.name());
        let sa = match pod.service_account_name() {
            "" => core_names::DEFAULT_SERVICE_ACCOUNT,
            sa => sa,
        }
        .to_string();
        let before = report.findings.len();
        let mut first_spec = None;
        let first_container = p["spec"]["containers"][0]["name"]
            .as_str()
            .map(str::to_owned);
        if !pod.mentions_gmsa() {
            report.warn(
                "pod",
                &subject,
                "the pod names no credential spec".into(),
                "set securityContext.windowsOptions.gmsaCredentialSpecName".into(),
            );
        }
        let mut seen_specs = Vec::new();
        for place in pod.places() {
            let Some(spec_name) = place.options.gmsa_credential_spec_name.clone() else {
                if place.options.gmsa_credential_spec.is_some() {
                    report.fail("pod-contents", &subject, format!("{} {:?} has credential-spec contents without a name", place.kind, place.owner), "name the GMSACredentialSpec in gmsaCredentialSpecName and recreate the pod".into());
                }
                continue;
            };
            first_spec.get_or_insert(spec_name.clone());
            let where_ = format!("{} {:?}", place.kind, place.owner);
            let Some(spec) = specs.get(&spec_name) else {
                report.fail(
                    "pod-spec-exists",
                    &subject,
                    format!("{where_} names {spec_name}, which does not exist"),
                    format!(
                        "create it: kubectl gmsa credspec new {spec_name} ... | kubectl apply -f -"
                    ),
                );
                continue;
            };
            if !seen_specs.contains(&spec_name) {
                seen_specs.push(spec_name.clone());
                let key = (ns.clone(), sa.clone(), spec_name.clone());
                if !reviews.contains_key(&key) {
                    let answer = review(client, &ns, &sa, &spec_name).await;
                    reviews.insert(key.clone(), answer);
                }
                match &reviews[&key] {
                    Ok((true, _)) => {}
                    Ok((false, reason)) => report.fail(
                        "pod-grant",
                        &subject,
                        format!(
                            "service account {ns}/{sa} may not use {spec_name}{}",
                            if reason.is_empty() {
                                String::new()
                            } else {
                                format!(" ({reason})")
                            }
                        ),
                        format!(
                            "kubectl gmsa grant {spec_name} --service-account {ns}:{sa} --apply"
                        ),
                    ),
                    Err(e) => report.warn(
                        "pod-grant",
                        &subject,
                        format!("cannot ask whether {ns}/{sa} may use {spec_name}: {e}"),
                        "run doctor as a user who may create subjectaccessreviews".into(),
                    ),
                }
            }
            let recreate = format!("kubectl -n {ns} delete pod {} (its controller recreates it with the current contents)", pod.name());
            match (&place.options.gmsa_credential_spec, spec.contents()) {
                (None, _) => report.fail("pod-contents", &subject, format!("{where_}: the contents of {spec_name} were never inlined (the webhook did not see this pod)"), format!("check the webhook rows above, then {recreate}")),
                (Some(_), None) => report.fail("pod-contents", &subject, format!("{spec_name} has no credspec key"), format!("kubectl edit gmsacredentialspec {spec_name}")),
                (Some(contents), Some(expected)) => match expected.matches(contents) {
                    Ok(true) => {}
                    Ok(false) | Err(_) => report.fail("pod-contents", &subject, format!("{where_}: the inlined contents differ from {spec_name} (it changed after the pod was created)"), recreate),
                },
            }
        }
        if !windows_targeted(p) {
            report.warn(
                "pod-windows",
                &subject,
                "the pod does not select Windows nodes (nodeSelector kubernetes.io/os: windows)"
                    .into(),
                "add nodeSelector: {kubernetes.io/os: windows} to the pod template".into(),
            );
        }
        for spec_name in &seen_specs {
            let host = netbios_name(p);
            if let Some(sharing) = hostnames.get(&(spec_name.clone(), host.clone())) {
                let others: Vec<&String> = sharing.iter().filter(|s| **s != subject).collect();
                if !others.is_empty() && is_live(p) {
                    report.fail(
                        "pod-hostname",
                        &subject,
                        format!("NetBIOS name {host} is shared with {} using {spec_name}: the domain sees one computer and secure channels break", others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
                        "kubectl gmsa install --apply --random-hostname (RANDOM_HOSTNAME=true), or give each pod a distinct spec.hostname".into(),
                    );
                }
            }
        }
        if report.findings.len() == before {
            report.pass(
                "pod",
                &subject,
                format!(
                    "uses {}: exists, granted to {sa}, inlined and current, targets Windows",
                    seen_specs.join(", ")
                ),
            );
        }
        checked.push(CheckedPod {
            namespace: ns,
            name: pod.name().to_string(),
            container: first_container,
            spec: first_spec,
        });
    }
    checked
}

/// A SubjectAccessReview's answer (allowed, reason), or why it could not be asked.
type Review = Result<(bool, String), String>;

/// A SubjectAccessReview: may this service account `use` this credential spec?
async fn review(client: &Client, namespace: &str, service_account: &str, spec: &str) -> Review {
    let body = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": core_names::service_account_user(namespace, service_account),
            "groups": core_names::service_account_groups(namespace),
            "resourceAttributes": {
                "namespace": namespace,
                "verb": core_names::USE_VERB,
                "group": core_names::GROUP,
                "version": core_names::VERSION,
                "resource": core_names::RESOURCE,
                "name": spec
            }
        }
    });
    let review: k8s_openapi::api::authorization::v1::SubjectAccessReview =
        serde_json::from_value(body).map_err(|e| e.to_string())?;
    let api: Api<k8s_openapi::api::authorization::v1::SubjectAccessReview> =
        Api::all(client.clone());
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| e.to_string())?;
    let status = answer.status.ok_or("no status in the answer")?;
    Ok((status.allowed, status.reason.unwrap_or_default()))
}

/// The documentation's troubleshooting steps, as command lines for `pod` (placeholders when
/// there is none).
fn node_steps(
    pod: Option<&CheckedPod>,
    specs: &BTreeMap<String, CredentialSpec>,
    name: &str,
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
   `kubectl gmsa install --node-setup --apply` sets it on every Windows node; to read it on the pod's node:
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
    use super::*;

    #[test]
    fn netbios_names_are_the_first_15_characters() {
        let pod = json!({"metadata": {"name": "iis-auth-7776966999-n5nzr"}, "spec": {}});
        assert_eq!(netbios_name(&pod), "IIS-AUTH-777696");
        let pod = json!({"metadata": {"name": "x"}, "spec": {"hostname": "web-1"}});
        assert_eq!(netbios_name(&pod), "WEB-1");
    }

    #[test]
    fn windows_targeting_by_selector_or_affinity() {
        assert!(windows_targeted(
            &json!({"spec": {"nodeSelector": {"kubernetes.io/os": "windows"}}})
        ));
        assert!(!windows_targeted(&json!({"spec": {}})));
        let affinity = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["windows"]}]}]}}}}});
        assert!(windows_targeted(&affinity));
    }

    #[test]
    fn table_has_fixes_and_a_summary() {
        let findings = vec![
            Finding {
                status: Status::Pass,
                check: "crd".into(),
                subject: String::new(),
                detail: "ok".into(),
                fix: None,
            },
            Finding {
                status: Status::Fail,
                check: "pod-grant".into(),
                subject: "default/iis".into(),
                detail: "no".into(),
                fix: Some("kubectl gmsa grant x".into()),
            },
        ];
        let text = table(&findings);
        assert!(
            text.contains("FAIL  pod-grant default/iis  no\n      fix: kubectl gmsa grant x\n"),
            "{text}"
        );
        assert!(text.ends_with("1 passed, 0 warnings, 1 failed\n"));
    }

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
        let text = node_steps(Some(&pod), &specs, "gmsa-webhook");
        assert!(
            text.contains("kubectl exec -n web iis-1 -c iis -- nltest.exe /sc_reset:contoso.com"),
            "{text}"
        );
        assert!(text.contains("nltest.exe /parentdomain"));
        assert!(text.contains("EnableCompartmentNamespace"));
        assert!(text.contains("Restart-Service -Name netlogon"));
    }
}
