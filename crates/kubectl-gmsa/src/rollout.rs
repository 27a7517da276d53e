//! Steps of an install that both modes take: the server-side dry run of everything first,
//! the CRD being served, the Deployment having a ready replica; and deleting what install
//! made (a mode switched away from, uninstall).

use std::time::{Duration, Instant};

use anyhow::bail;
use gmsa_deploy::{Kind, KindInfo, Object, ObjectRef, Settings};
use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, PodSpec, WindowsSecurityContextOptions,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};
use serde_json::Value;

use crate::apply::{Applier, Outcome};

/// Sends every object as a server-side dry run, so an install that would fail part-way
/// (a conflict, a missing cert-manager, a forbidden kind) fails before changing anything.
/// Objects in a namespace the install itself creates cannot be checked until it exists: the
/// API server answers those with "namespace not found", which is not counted.
pub async fn preflight(
    applier: &Applier,
    objects: &[&Object],
    namespace: &str,
) -> anyhow::Result<()> {
    let dry = Applier {
        server_dry_run: true,
        ..applier.clone()
    };
    let mut problems = Vec::new();
    for object in objects {
        if let Err(e) = dry.apply(object).await {
            if !is_missing_namespace(&e, namespace) {
                problems.push(format!("{e}: {}", e.root_cause()));
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "nothing was changed: {} of {} objects would fail (server-side dry run):\n  {}",
        problems.len(),
        objects.len(),
        problems.join("\n  ")
    )
}

/// Objects a server dry run could not check: they live in the install's namespace, which does
/// not exist yet (the dry run only pretends to create it), and the API server answers such an
/// object with "namespace not found" before looking at it.
#[derive(Debug)]
pub struct Unchecked {
    namespace: String,
    objects: Vec<String>,
}

impl Unchecked {
    /// Nothing unchecked yet, for an install into `namespace`.
    pub fn new(namespace: &str) -> Self {
        Unchecked {
            namespace: namespace.to_string(),
            objects: Vec::new(),
        }
    }

    /// The objects left unchecked, as kubectl names them.
    pub fn objects(&self) -> &[String] {
        &self.objects
    }

    /// The line that says what the server did not check, if anything.
    pub fn note(&self) -> Option<String> {
        if self.objects.is_empty() {
            return None;
        }
        Some(format!(
            "note: namespace {ns} does not exist yet, so the server did not check the {n} object(s) in it: {list}. \
             Everything else was checked. To check those too, create the namespace first \
             (kubectl create namespace {ns}) and run the dry run again.",
            ns = self.namespace,
            n = self.objects.len(),
            list = self.objects.join(", ")
        ))
    }
}

/// Applies one object of an install and returns its kubectl-like line. In a server dry run,
/// an object whose namespace does not exist yet is recorded in `unchecked` and reported as
/// not checked (`None` outcome) instead of failing the whole dry run.
pub async fn apply_step(
    applier: &Applier,
    object: &Object,
    unchecked: &mut Unchecked,
) -> anyhow::Result<(Option<Outcome>, String)> {
    match applier.apply(object).await {
        Ok((outcome, line)) => Ok((Some(outcome), line)),
        Err(e) if applier.server_dry_run && is_missing_namespace(&e, &unchecked.namespace) => {
            let what = object.id.to_string();
            let line = format!(
                "{what} not checked (server dry run: namespace {} does not exist yet)",
                unchecked.namespace
            );
            unchecked.objects.push(what);
            Ok((None, line))
        }
        Err(e) => Err(e),
    }
}

fn is_missing_namespace(e: &anyhow::Error, namespace: &str) -> bool {
    matches!(
        e.downcast_ref::<kube::Error>(),
        Some(kube::Error::Api(status)) if status.code == 404
            && status.details.as_ref().is_some_and(|d| d.kind == "namespaces" && d.name == namespace)
    )
}

/// How long the API server gets to load new webhook configurations before the Secret they
/// must trust changes. It watches them and usually reacts within a second.
pub async fn wait_established(applier: &Applier, crd: &serde_json::Value) -> anyhow::Result<()> {
    let info = Kind::CustomResourceDefinition.info();
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = applier.get(info, None, name).await?;
        let established = stored.as_ref().is_some_and(|c| {
            c["status"]["conditions"].as_array().is_some_and(|conds| {
                conds
                    .iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
            })
        });
        // Established is not yet served: the new resource's storage answers 429 for a moment.
        if established && served(applier, crd).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "CRD {name} was not established within 60 s: check `kubectl describe crd {name}`"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether the CRD's resource answers a list, through its storage version.
async fn served(applier: &Applier, crd: &serde_json::Value) -> bool {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let Some(version) = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())
    else {
        return true;
    };
    let resource = kube::api::ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: format!("{group}/{version}"),
        kind: spec["names"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        plural: spec["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::all_with(applier.client.clone(), &resource);
    api.list(&kube::api::ListParams::default().limit(1))
        .await
        .is_ok()
}

/// Waits until the Deployment's rollout of its current template is complete: every replica
/// runs the current template and is ready, and none of an older one is left. A mode switch
/// changes the template (webhook to keeper or back) without changing the Deployment's
/// selector, so a ready replica of the old role must not count.
pub async fn wait_available(
    applier: &Applier,
    settings: &Settings,
    timeout: Duration,
) -> anyhow::Result<()> {
    let info = Kind::Deployment.info();
    let deadline = Instant::now() + timeout;
    eprintln!(
        "waiting up to {}s for deployment {}/{} to roll out (every replica of the current template ready)",
        timeout.as_secs(),
        settings.namespace,
        settings.name
    );
    loop {
        let deployment = applier
            .get(info, Some(&settings.namespace), &settings.name)
            .await?
            .unwrap_or(Value::Null);
        let state = RolloutState::of(&deployment);
        if state.complete() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "deployment {ns}/{name} did not finish rolling out after {}s ({state}), so nothing that \
                 depends on it was changed: check `kubectl -n {ns} describe deploy/{name}` and \
                 `kubectl -n {ns} logs deploy/{name}`, then run install again (or pass --no-wait)",
                timeout.as_secs(),
                ns = settings.namespace,
                name = settings.name
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What a Deployment's status says of its rollout (`kubectl rollout status`'s reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutState {
    pub generation: i64,
    pub observed: i64,
    pub wanted: i64,
    pub total: i64,
    pub updated: i64,
    pub available: i64,
}

impl RolloutState {
    pub fn of(deployment: &Value) -> Self {
        let number = |v: &Value, default: i64| v.as_i64().unwrap_or(default);
        let status = &deployment["status"];
        Self {
            generation: number(&deployment["metadata"]["generation"], 0),
            observed: number(&status["observedGeneration"], -1),
            wanted: number(&deployment["spec"]["replicas"], 1),
            total: number(&status["replicas"], 0),
            updated: number(&status["updatedReplicas"], 0),
            available: number(&status["availableReplicas"], 0),
        }
    }

    /// Every replica runs the current template and is available, none of an older one is
    /// left, and at least one serves.
    pub fn complete(&self) -> bool {
        self.observed >= self.generation
            && self.updated >= self.wanted
            && self.total == self.updated
            && self.available >= self.updated
            && self.available > 0
    }
}

impl std::fmt::Display for RolloutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} replicas updated, {} available, {} in all",
            self.updated, self.wanted, self.available, self.total
        )
    }
}

/// Waits until the webhook's Service has a ready endpoint: the API server calls the webhook
/// at its endpoints, which follow the pods' readiness a moment after the Deployment's status.
pub async fn wait_endpoints(
    applier: &Applier,
    settings: &Settings,
    timeout: Duration,
) -> anyhow::Result<()> {
    let slices: Api<EndpointSlice> = Api::namespaced(applier.client.clone(), &settings.namespace);
    let of_service =
        ListParams::default().labels(&format!("kubernetes.io/service-name={}", settings.name));
    let deadline = Instant::now() + timeout;
    loop {
        let ready = match slices.list(&of_service).await {
            Ok(list) => ready_endpoints(&list.items) > 0,
            // Before 1.21 there is no discovery/v1: the Endpoints object says the same.
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let endpoints = applier
                    .get(&ENDPOINTS, Some(&settings.namespace), &settings.name)
                    .await?
                    .unwrap_or(Value::Null);
                endpoints["subsets"].as_array().is_some_and(|subsets| {
                    subsets
                        .iter()
                        .any(|s| s["addresses"].as_array().is_some_and(|a| !a.is_empty()))
                })
            }
            Err(e) => return Err(e.into()),
        };
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "service {ns}/{name} has no ready endpoint after {}s, so the webhooks were not \
                 registered: check `kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={name}` and the pods' readiness",
                timeout.as_secs(),
                ns = settings.namespace,
                name = settings.name
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The endpoints of these slices that take traffic: ready (an absent condition counts as
/// ready, as kube-proxy counts it) and not terminating.
pub fn ready_endpoints(slices: &[EndpointSlice]) -> usize {
    slices
        .iter()
        .flat_map(|slice| slice.endpoints.iter().flatten())
        .filter(|endpoint| {
            let conditions = endpoint.conditions.as_ref();
            conditions.and_then(|c| c.ready).unwrap_or(true)
                && !conditions.and_then(|c| c.terminating).unwrap_or(false)
        })
        .count()
}

/// Endpoints are read, never rendered, so [`Kind`] does not list them.
const ENDPOINTS: KindInfo = KindInfo {
    api_version: "v1",
    kind: "Endpoints",
    plural: "endpoints",
    namespaced: true,
};

/// Deletes those of `targets` that exist and carry this install's labels, in order; returns
/// the kubectl-like lines, each followed by ` (why)` when given. An object shared with the
/// reference webhook is left for the user to retire.
pub async fn delete_ours(
    applier: &Applier,
    settings: &Settings,
    targets: &[ObjectRef],
    why: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let ours = gmsa_deploy::selector_labels(settings);
    let mut lines = Vec::new();
    for target in targets {
        let (info, namespace, name) = (target.kind.info(), target.namespace(), &target.name);
        let Some(found) = applier.get(info, namespace, name).await? else {
            continue;
        };
        let labelled = ours
            .iter()
            .all(|(k, v)| found["metadata"]["labels"][k].as_str() == Some(v.as_str()));
        if !labelled {
            eprintln!(
                "skipped {}: it does not carry install's labels",
                info.object_name(name)
            );
            continue;
        }
        if crate::reference::is_reference_configuration(&found) {
            eprintln!(
                "skipped {}: it also holds the reference webhook (delete it yourself to retire that)",
                info.object_name(name)
            );
            continue;
        }
        if let Some(line) = applier.delete(info, namespace, name).await? {
            lines.push(match why {
                Some(why) => format!("{line} ({why})"),
                None => line,
            });
        }
    }
    Ok(lines)
}

/// Waits (30 s) until the API server refuses, by one of the ValidatingAdmissionPolicies
/// `policies`, a server-dry-run pod in the install's namespace that names a spec no one has;
/// `Err` holds the last answer. The pod runs as the install's ServiceAccount: it exists
/// wherever install ran, and the webhooks skip that namespace, so a policy answers first.
pub async fn wait_refused_by(
    applier: &Applier,
    settings: &Settings,
    policies: &[String],
) -> Result<(), String> {
    let expected: Vec<String> = policies
        .iter()
        .map(|policy| format!("ValidatingAdmissionPolicy '{policy}'"))
        .collect();
    wait_probe_refused(applier, &settings.namespace, &settings.name, &expected).await
}

/// Waits (30 s) until the API server sends a server-dry-run pod in namespace `default`
/// (which the webhooks handle) naming a spec no one has to our mutating webhook: refused by
/// it, or refused because it could not be called (it fails closed). Either way the new
/// configuration is in force, so nothing is admitted unchecked once the policies go. `Err`
/// holds the last answer.
pub async fn wait_webhook_answers(applier: &Applier) -> Result<(), String> {
    let webhook = gmsa_deploy::names::MUTATING_WEBHOOK;
    let expected = [
        format!("admission webhook \"{webhook}\" denied"),
        format!("failed calling webhook \"{webhook}\""),
    ];
    wait_probe_refused(applier, "default", "default", &expected).await
}

/// Waits (30 s) until a server-dry-run probe pod in `namespace`, running as
/// `service_account` and naming a spec no one has, is refused with a message holding one of
/// `expected`.
async fn wait_probe_refused(
    applier: &Applier,
    namespace: &str,
    service_account: &str,
    expected: &[String],
) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(applier.client.clone(), namespace);
    let probe = Pod {
        metadata: ObjectMeta {
            name: Some(PROBE.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some(service_account.into()),
            security_context: Some(PodSecurityContext {
                windows_options: Some(WindowsSecurityContextOptions {
                    gmsa_credential_spec_name: Some(format!("{PROBE}-no-such-spec")),
                    ..WindowsSecurityContextOptions::default()
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![Container {
                name: "probe".into(),
                image: Some("probe".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    };
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = pods.create(&params, &probe).await;
        match &answer {
            Err(kube::Error::Api(s)) if expected.iter().any(|e| s.message.contains(e)) => {
                return Ok(())
            }
            _ if Instant::now() >= deadline => {
                return Err(match answer {
                    Ok(_) => "a pod naming no existing spec was admitted".to_string(),
                    Err(e) => e.to_string(),
                })
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The probe pod's name (never created: every probe is a dry run).
const PROBE: &str = "gmsa-install-probe";

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn nothing_unchecked_says_nothing() {
        assert_eq!(Unchecked::new("gmsa-system").note(), None);
    }

    #[test]
    fn the_note_names_the_namespace_and_every_unchecked_object() {
        let mut unchecked = Unchecked::new("gmsa-system");
        unchecked.objects.extend([
            "serviceaccount/gmsa-webhook".into(),
            "service/gmsa-webhook".into(),
        ]);
        let note = unchecked.note().unwrap();
        assert!(
            note.contains("namespace gmsa-system does not exist yet"),
            "{note}"
        );
        assert!(
            note.contains(
                "the 2 object(s) in it: serviceaccount/gmsa-webhook, service/gmsa-webhook"
            ),
            "{note}"
        );
        assert!(
            note.contains("kubectl create namespace gmsa-system"),
            "{note}"
        );
    }
}
