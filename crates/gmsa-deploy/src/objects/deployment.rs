//! The webhook's Deployment: a locked-down, non-root pod spread across nodes, probed on its
//! own endpoints.

use std::collections::BTreeMap;

use gmsa_core::names as core_names;
use gmsa_core::rbac::AuthorizationMode;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext,
    TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::meta::{self, match_labels};
use crate::{labels, names, selector_labels, CertMode, Settings};

/// The Secret the Deployment mounts.
fn serving_secret_name(settings: &Settings) -> String {
    match &settings.certs {
        CertMode::Secret(name) => name.clone(),
        _ => names::tls_secret(&settings.name),
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn port(name: &str, container_port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// Requests and limits as Kubernetes quantities, `cpu` only requested.
pub fn resources(
    requests_cpu: &str,
    requests_memory: &str,
    limits_memory: &str,
) -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect::<BTreeMap<_, _>>()
    };
    ResourceRequirements {
        requests: Some(quantities(&[
            ("cpu", requests_cpu),
            ("memory", requests_memory),
        ])),
        limits: Some(quantities(&[("memory", limits_memory)])),
        claims: None,
    }
}

pub fn deployment(settings: &Settings) -> Deployment {
    let mut env = vec![
        env(
            "TLS_CRT",
            format!("{}/{}", names::TLS_MOUNT_PATH, names::TLS_CERT_KEY),
        ),
        env(
            "TLS_KEY",
            format!("{}/{}", names::TLS_MOUNT_PATH, names::TLS_KEY_KEY),
        ),
        env("HTTPS_PORT", names::CONTAINER_PORT.to_string()),
    ];
    if let Some(qps) = &settings.qps {
        env.push(self::env("QPS", qps));
    }
    if let Some(burst) = settings.burst {
        env.push(self::env("BURST", burst.to_string()));
    }
    if settings.random_hostname {
        env.push(self::env("RANDOM_HOSTNAME", "true"));
    }
    // The default needs no argument, so a default install renders as before.
    let mut args: Vec<String> = match settings.authorization {
        AuthorizationMode::Hybrid => Vec::new(),
        mode => vec![format!("--authorization={mode}")],
    };
    if settings.certs == CertMode::SelfSigned {
        args.push(format!(
            "--renew-certs-secret={}",
            names::tls_secret(&settings.name)
        ));
        args.push(format!(
            "--renew-webhook-configuration={}",
            names::webhook_configuration(&settings.name)
        ));
        env.push(EnvVar {
            name: "POD_NAMESPACE".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.namespace".into(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
        });
    }
    let client_ca = settings.client_ca_pem.is_some();
    let mut ports = vec![port(names::PORT_NAME, names::CONTAINER_PORT)];
    let mut mounts = vec![mount(names::TLS_VOLUME, names::TLS_MOUNT_PATH)];
    let mut volumes = vec![Volume {
        name: names::TLS_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(serving_secret_name(settings)),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }];
    if client_ca {
        args.push(format!(
            "--client-ca={}/{}",
            names::CLIENT_CA_MOUNT_PATH,
            names::CA_CERT_KEY
        ));
        args.push(format!("--probe-port={}", names::PROBE_PORT));
        ports.push(port(names::PROBE_PORT_NAME, names::PROBE_PORT));
        mounts.push(mount(names::CLIENT_CA_VOLUME, names::CLIENT_CA_MOUNT_PATH));
        volumes.push(Volume {
            name: names::CLIENT_CA_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::client_ca(&settings.name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    // With a client CA the main port demands a certificate the kubelet does not have.
    let (probe_port, probe_scheme) = if client_ca {
        (names::PROBE_PORT_NAME, "HTTP")
    } else {
        (names::PORT_NAME, "HTTPS")
    };
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(probe_port.into()),
            scheme: Some(probe_scheme.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let container = Container {
        name: names::CONTAINER_NAME.into(),
        image: Some(settings.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: (!args.is_empty()).then_some(args),
        env: Some(env),
        ports: Some(ports),
        readiness_probe: Some(probe(core_names::paths::READYZ, 5, 3)),
        liveness_probe: Some(probe(core_names::paths::HEALTH, 10, 3)),
        resources: Some(resources(
            &settings.resources.requests_cpu,
            &settings.resources.requests_memory,
            &settings.resources.limits_memory,
        )),
        security_context: Some(locked_down()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let mut pod_spec = pod_spec(settings, container);
    pod_spec.volumes = Some(volumes);
    workload_deployment(settings, pod_spec, names::WEBHOOK_ROLE)
}

/// No privilege, no writable root, no capabilities.
fn locked_down() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

/// A non-root pod of `container`, spread across nodes.
fn pod_spec(settings: &Settings, container: Container) -> PodSpec {
    PodSpec {
        service_account_name: Some(settings.name.clone()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(names::NON_ROOT_UID),
            run_as_group: Some(names::NON_ROOT_UID),
            seccomp_profile: Some(runtime_default()),
            ..PodSecurityContext::default()
        }),
        node_selector: Some(settings.node_selector.clone()),
        topology_spread_constraints: Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(match_labels(selector_labels(settings))),
            ..TopologySpreadConstraint::default()
        }]),
        containers: vec![container],
        tolerations: (!settings.tolerations.is_empty()).then(|| settings.tolerations.clone()),
        ..PodSpec::default()
    }
}

/// Policy mode's only process: it publishes each namespace's contents and is on no
/// admission path, so it needs no certificate, Service or second port.
pub fn keeper(settings: &Settings) -> Deployment {
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(names::PROBE_PORT_NAME.into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let container = Container {
        name: names::KEEPER_CONTAINER_NAME.into(),
        image: Some(settings.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(keeper_args(settings)),
        ports: Some(vec![port(names::PROBE_PORT_NAME, names::PROBE_PORT)]),
        readiness_probe: Some(probe(core_names::paths::READYZ, 5)),
        liveness_probe: Some(probe(core_names::paths::HEALTH, 10)),
        resources: Some(resources(
            &settings.resources.requests_cpu,
            &settings.resources.requests_memory,
            &settings.resources.limits_memory,
        )),
        security_context: Some(locked_down()),
        ..Container::default()
    };
    workload_deployment(settings, pod_spec(settings, container), names::KEEPER_ROLE)
}

/// The keeper's command line (`gmsa-webhook`'s flags).
pub fn keeper_args(settings: &Settings) -> Vec<String> {
    vec![
        "--keep-published-contents".into(),
        format!("--install-name={}", settings.name),
        format!("--install-namespace={}", settings.namespace),
        "--no-admission".into(),
        format!("--probe-port={}", names::PROBE_PORT),
    ]
}

/// The Deployment around a pod: surge one, never fewer ready than asked. Its pods carry their
/// role (`app.kubernetes.io/component`: webhook or keeper), so the Service and the budget
/// select only webhook replicas, and a mode switch can tell the new role's pods from the
/// old; the Deployment's own selector stays the same in both modes (it cannot change).
fn workload_deployment(settings: &Settings, pod_spec: PodSpec, role: &str) -> Deployment {
    // The keeper runs alone, and an old one ends before a new one starts: two keepers deciding
    // from different observations could list a namespace the other just emptied.
    let keeper = role == names::KEEPER_ROLE;
    let strategy = if keeper {
        DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        }
    } else {
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_unavailable: Some(IntOrString::Int(0)),
                max_surge: Some(IntOrString::Int(1)),
            }),
        }
    };
    Deployment {
        metadata: meta::namespaced(settings, &settings.name, "webhook"),
        spec: Some(DeploymentSpec {
            replicas: Some(if keeper { 1 } else { settings.replicas }),
            selector: match_labels(selector_labels(settings)),
            strategy: Some(strategy),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(settings, role)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}
