//! The namespace, the Service in front of the replicas, their PodDisruptionBudget, and the
//! optional Windows node setup.

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Container, Namespace, PodSecurityContext, PodSpec, PodTemplateSpec, Service, ServicePort,
    ServiceSpec, Toleration, WindowsSecurityContextOptions,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::deployment::resources;
use crate::meta::{self, match_labels};
use crate::{labels, names, selector_labels, webhook_selector_labels, KubeVersion, Settings};

/// The namespace, labelled so the webhooks skip it (its own pods must start without it).
pub fn namespace(settings: &Settings) -> Namespace {
    let mut labels = labels(settings, "webhook");
    labels.insert(names::DISABLE_LABEL.into(), names::DISABLE_VALUE.into());
    if settings.node_setup {
        // HostProcess pods are privileged by definition.
        labels.insert(
            "pod-security.kubernetes.io/enforce".into(),
            "privileged".into(),
        );
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(settings.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

pub fn service(settings: &Settings) -> Service {
    Service {
        metadata: meta::namespaced(settings, &settings.name, "webhook"),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(webhook_selector_labels(settings)),
            ports: Some(vec![ServicePort {
                name: Some(names::PORT_NAME.into()),
                port: names::SERVICE_PORT,
                target_port: Some(IntOrString::String(names::PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// At most one replica down at a time for voluntary disruptions (drains), whatever the count.
/// Before 1.21 the API is `policy/v1beta1`, which k8s-openapi no longer has; its spec has the
/// same fields, so only `apiVersion` differs.
pub fn pod_disruption_budget(settings: &Settings) -> Value {
    let budget = PodDisruptionBudget {
        metadata: meta::namespaced(settings, &settings.name, "webhook"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(match_labels(webhook_selector_labels(settings))),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    };
    let mut value = meta::to_value(&budget);
    if !settings.kube_version.at_least(KubeVersion::POLICY_V1) {
        value["apiVersion"] = Value::from("policy/v1beta1");
    }
    value
}

/// A HostProcess DaemonSet on Windows nodes that sets `EnableCompartmentNamespace=1`, which
/// the documentation asks for when pods reach SMB shares by host name, then sleeps (a
/// DaemonSet's pods must keep running). Pods created before the key was set must be
/// recreated to pick it up.
pub fn node_setup(settings: &Settings) -> DaemonSet {
    let script = format!(
        "$ErrorActionPreference = 'Stop'; \
         reg.exe add \"{key}\" /v {value} /t REG_DWORD /d 1 /f; \
         if ($LASTEXITCODE -ne 0) {{ exit $LASTEXITCODE }}; \
         Write-Output \"{value}=1 set on $env:COMPUTERNAME\"; \
         while ($true) {{ Start-Sleep -Seconds 3600 }}",
        key = names::HNS_STATE_KEY,
        value = names::COMPARTMENT_NAMESPACE_VALUE
    );
    let name = names::node_setup(&settings.name);
    let mut selector = selector_labels(settings);
    selector.insert(names::LABEL_COMPONENT.into(), "node-setup".into());
    let container = Container {
        name: "set-compartment-namespace".into(),
        image: Some(settings.node_setup_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(meta::strings(&[
            "powershell.exe",
            "-NoProfile",
            "-Command",
            &script,
        ])),
        resources: Some(resources("10m", "32Mi", "128Mi")),
        ..Container::default()
    };
    DaemonSet {
        metadata: meta::namespaced(settings, &name, "node-setup"),
        spec: Some(DaemonSetSpec {
            selector: match_labels(selector),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(settings, "node-setup")),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    node_selector: Some(
                        [("kubernetes.io/os".to_string(), "windows".to_string())].into(),
                    ),
                    host_network: Some(true),
                    security_context: Some(PodSecurityContext {
                        windows_options: Some(WindowsSecurityContextOptions {
                            host_process: Some(true),
                            run_as_user_name: Some("NT AUTHORITY\\SYSTEM".into()),
                            ..WindowsSecurityContextOptions::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".into()),
                        ..Toleration::default()
                    }]),
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..DaemonSetSpec::default()
        }),
        status: None,
    }
}
