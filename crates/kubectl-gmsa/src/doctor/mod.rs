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
mod guard;
mod node_steps;
mod objects;
mod pods;
mod policies;
mod readiness;
mod report;

use std::process::ExitCode;

use gmsa_deploy::names;

pub use args::{doctor_help, AdArgs, DoctorArgs, DoctorFormat, AD_EXAMPLES, DOCTOR_EXAMPLES};
pub use pods::netbios_name;
pub use report::{table, Finding, Status};

use node_steps::node_steps;
use report::Report;

/// `doctor`.
pub fn doctor(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
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
    if directory.is_some() {
        return Ok(ad::exit_code(&report.findings));
    }
    Ok(match report.worst() {
        Status::Pass => ExitCode::SUCCESS,
        Status::Warn => ExitCode::from(1),
        Status::Fail => ExitCode::from(2),
    })
}

/// The cluster-side checks in order, each a row or more; the node steps when asked for.
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
    let version = match crate::cluster::cluster_version(&client).await {
        Ok(v) => {
            report.pass("cluster", "", format!("Kubernetes {v}"));
            v
        }
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
    crd::check(&client, &mut report).await;
    guard::check(&client, &args.name, &mut report).await;
    if policies::installed(&client, &args.name).await {
        policies::check(&client, &args.name, version, &mut report).await;
    } else {
        let configuration = names::webhook_configuration(&args.name);
        if let Some(registration) =
            configurations::check(&client, &configuration, &mut report).await
        {
            certificates::check(&client, &configuration, &registration, &mut report).await;
            readiness::check(&client, &registration.endpoint, &mut report).await;
        }
    }
    configurations::check_reference(&client, &mut report).await;
    let specs = credspecs::check(&client, &mut report).await;
    let pods = pods::check(&client, args, &specs, &mut report).await;
    let steps = args
        .node_steps
        .then(|| node_steps(pods.first(), &specs, &args.name));
    (report, steps)
}
