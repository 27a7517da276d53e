//! The `webhook-ready` row: whether the webhook the configurations call answers.

use gmsa_core::names as core_names;
use gmsa_deploy::names;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::Client;
use serde_json::Value;

use super::configurations::Endpoint;
use super::fixes::Fixes;
use super::report::Report;
use super::webhook_cause::{self, Backend, Cause, Observed};
use crate::direct;

/// The webhook answers `/readyz` (through the API server's service proxy, or at its URL), and
/// which version it is (`/info`); when a Service's webhook does not answer, why.
pub(super) async fn check(
    client: &Client,
    endpoint: &Endpoint,
    fixes: &Fixes,
    report: &mut Report,
) {
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
            let result = match direct::target(url) {
                Ok(target) => tokio::task::spawn_blocking(move || {
                    let ready = direct::get(&target, core_names::paths::READYZ).and_then(|a| {
                        if a.status == 200 {
                            Ok(())
                        } else {
                            Err(format!("/readyz answered {}", a.status))
                        }
                    });
                    let info = direct::get(&target, core_names::paths::INFO)
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
        Err(e) => {
            let cause = match endpoint {
                Endpoint::Service {
                    namespace, name, ..
                } => cause(client, Backend { namespace, name }, fixes).await,
                Endpoint::Url(_) => None,
            };
            let (detail, fix) = match cause {
                Some(Cause { detail, fix }) => (detail, fix),
                None => (e, fix),
            };
            report.fail(
                "webhook-ready",
                &subject,
                format!("the webhook does not answer /readyz: {detail}"),
                fix,
            );
        }
    }
}

/// Reads the Deployment behind the Service, its pods and the Service's endpoints, and names
/// the cause; `None` when they cannot be read or explain nothing.
async fn cause(client: &Client, backend: Backend<'_>, fixes: &Fixes) -> Option<Cause> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), backend.namespace);
    let deployment = deployments
        .get_opt(backend.name)
        .await
        .ok()?
        .map(serde_json::to_value)
        .transpose()
        .ok()?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), backend.namespace);
    let selected = ListParams::default().labels(&backend.pod_selector());
    let pods: Vec<Value> = pods
        .list(&selected)
        .await
        .ok()?
        .items
        .iter()
        .filter_map(|p| serde_json::to_value(p).ok())
        .collect();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), backend.namespace);
    let of_service =
        ListParams::default().labels(&format!("kubernetes.io/service-name={}", backend.name));
    // A server without discovery/v1 (404), or one that will not say, leaves the endpoints out.
    let ready_endpoints = slices
        .list(&of_service)
        .await
        .ok()
        .map(|list| crate::rollout::ready_endpoints(&list.items));
    let observed = Observed {
        deployment: deployment.as_ref(),
        pods: &pods,
        ready_endpoints,
    };
    webhook_cause::diagnose(backend, observed, fixes)
}

/// `https://host:port` of a webhook URL, without its path.
fn url_base(url: &str) -> String {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    format!("https://{}", rest.split('/').next().unwrap_or(rest))
}
