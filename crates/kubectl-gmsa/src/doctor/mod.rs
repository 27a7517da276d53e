//! `doctor`: what stands between a Windows pod and its gMSA, checked from the cluster side,
//! one row per finding with a one-line fix; and, on request, the node-side steps of the
//! documentation's troubleshooting section, filled in for a pod. `--ad` adds the directory
//! side (`ad`). Each check is a module that adds its rows to the `report`.

mod ad;
mod args;
mod certificates;
mod configurations;
mod crd;
mod credspecs;
mod fixes;
mod guard;
mod hostnames;
mod node_steps;
mod objects;
mod pods;
mod policies;
mod readiness;
mod report;
mod webhook_cause;

use gmsa_deploy::{names, Admission, Settings};

use crate::apply::installed_admission;
use crate::exit::ExitStatus;

pub use args::{doctor_help, AdArgs, DoctorArgs, DoctorFormat, AD_EXAMPLES, DOCTOR_EXAMPLES};
pub use fixes::{Fixes, InstallFix};
pub use hostnames::netbios_name;
pub use report::{table, Finding, Status};

use node_steps::node_steps;
use report::Report;

/// `doctor`.
pub fn doctor(args: &DoctorArgs) -> anyhow::Result<ExitStatus> {
    let runtime = crate::cluster::runtime()?;
    let directory = ad::prepare(&args.ad)?;
    let (mut report, steps) = if args.ad.ad_only {
        (Report::default(), None)
    } else {
        runtime.block_on(examine(args))
    };
    if let Some(directory) = &directory {
        let findings = runtime.block_on(ad::examine(&args.ad, directory))?;
        report.findings.extend(findings);
    }
    match args.output {
        DoctorFormat::Json => {
            let text = report::json(&report, steps.as_deref())?;
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
    Ok(report::exit_status(&report.findings))
}

/// The namespace the install named `settings.name` runs in, so its fixes reinstall it there
/// rather than put a second copy in the default namespace: its Deployment's (found by
/// install's labels, in either mode), else the namespace of the Service its mutating webhook
/// calls, else the default.
async fn install_namespace(client: &kube::Client, settings: &Settings) -> String {
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::all(client.clone());
    let listed = deployments
        .list(&kube::api::ListParams::default().labels(&gmsa_deploy::selector(settings)))
        .await;
    if let Some(namespace) = listed
        .ok()
        .and_then(|list| list.items.into_iter().find_map(|d| d.metadata.namespace))
    {
        return namespace;
    }
    let configurations: kube::Api<
        k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    > = kube::Api::all(client.clone());
    configurations
        .get_opt(&names::webhook_configuration(&settings.name))
        .await
        .ok()
        .flatten()
        .and_then(|c| {
            c.webhooks?
                .into_iter()
                .find_map(|w| w.client_config.service)
        })
        .map(|service| service.namespace)
        .unwrap_or_else(|| names::DEFAULT_NAMESPACE.to_string())
}

/// The cluster-side checks in order, each a row or more; the node steps when asked for.
async fn examine(args: &DoctorArgs) -> (Report, Option<String>) {
    let mut report = Report::default();
    let client = match crate::cluster::client().await {
        Ok(client) => client,
        Err(e) => {
            report.fail(
                report::CLUSTER,
                "",
                format!("{e}: {}", e.root_cause()),
                "check KUBECONFIG and `kubectl cluster-info`".into(),
            );
            return (report, None);
        }
    };
    let version = match crate::cluster::cluster_version(&client).await {
        Ok(v) => {
            report.pass(report::CLUSTER, "", format!("Kubernetes {v}"));
            v
        }
        Err(e) => {
            report.fail(
                report::CLUSTER,
                "",
                format!("{e}: {}", e.root_cause()),
                "check KUBECONFIG and `kubectl cluster-info`".into(),
            );
            return (report, None);
        }
    };
    let install = Settings {
        name: args.name.clone(),
        ..Settings::default()
    };
    // An install whose mode cannot be read is examined as the webhook, the default.
    let admission = installed_admission(&client, &install)
        .await
        .unwrap_or(Admission::Webhook);
    let policy_mode = admission == Admission::Policies;
    let fixes = Fixes {
        admission,
        name: args.name.clone(),
        namespace: install_namespace(&client, &install).await,
    };
    crd::check(&client, &fixes, &mut report).await;
    guard::check(&client, &fixes, &mut report).await;
    if policy_mode {
        policies::check(&client, &args.name, version, &fixes, &mut report).await;
    } else {
        let configuration = names::webhook_configuration(&args.name);
        if let Some(registration) =
            configurations::check(&client, &configuration, &fixes, &mut report).await
        {
            certificates::check(&client, &configuration, &registration, &fixes, &mut report).await;
            readiness::check(&client, &registration.endpoint, &fixes, &mut report).await;
        }
    }
    configurations::check_reference(&client, &fixes, &mut report).await;
    configurations::check_other_install(&client, &fixes, &mut report).await;
    let specs = credspecs::check(&client, &fixes, &mut report).await;
    let pods = pods::check(&client, args, &specs, &fixes, &mut report).await;
    let steps = args
        .node_steps
        .then(|| node_steps(pods.first(), &specs, &fixes));
    (report, steps)
}
