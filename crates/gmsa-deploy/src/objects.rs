//! The built-in objects (and cert-manager's), as JSON: what `install` applies and the Helm
//! chart templates.

use base64::Engine as _;
use gmsa_core::names as core_names;
use serde_json::{json, Map, Value};

use crate::{labels, names, selector_labels, KubeVersion, Settings, TlsMaterial};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn meta(settings: &Settings, name: &str, component: &str, namespaced: bool) -> Value {
    let mut meta = json!({"name": name, "labels": labels(settings, component)});
    if namespaced {
        meta["namespace"] = json!(settings.namespace);
    }
    meta
}

/// The namespace, labelled so the webhooks skip it (its own pods must start without it).
pub fn namespace(settings: &Settings) -> Value {
    let mut labels = labels(settings, "webhook");
    labels.insert(names::DISABLE_LABEL.into(), names::DISABLE_VALUE.into());
    if settings.node_setup {
        // HostProcess pods are privileged by definition.
        labels.insert(
            "pod-security.kubernetes.io/enforce".into(),
            "privileged".into(),
        );
    }
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": settings.namespace, "labels": labels}
    })
}

pub fn service_account(settings: &Settings) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(settings, &settings.name, "webhook", true)
    })
}

/// Exactly what the webhook's Kubernetes backend does: watch credential specs (with a GET on a
/// cache miss), watch the RBAC objects that invalidate its cached access reviews, and ask
/// LocalSubjectAccessReviews.
pub fn cluster_role(settings: &Settings) -> Value {
    let mut role = json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"),
        "kind": "ClusterRole",
        "metadata": meta(settings, &settings.name, "webhook", false),
        "rules": [
            {
                "apiGroups": [core_names::GROUP],
                "resources": [core_names::RESOURCE],
                "verbs": ["get", "list", "watch"]
            },
            {
                "apiGroups": [RBAC_GROUP],
                "resources": ["roles", "clusterroles", "rolebindings", "clusterrolebindings"],
                "verbs": ["list", "watch"]
            },
            {
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["localsubjectaccessreviews"],
                "verbs": ["create"]
            }
        ]
    });
    if settings.certs == crate::CertMode::SelfSigned {
        // The renewal keeps the caBundle of our two configurations, and only theirs.
        if let Some(rules) = role["rules"].as_array_mut() {
            rules.push(json!({
                "apiGroups": ["admissionregistration.k8s.io"],
                "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
                "resourceNames": [names::webhook_configuration(&settings.name)],
                "verbs": ["get", "update"]
            }));
        }
    }
    role
}

pub fn cluster_role_binding(settings: &Settings) -> Value {
    json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"),
        "kind": "ClusterRoleBinding",
        "metadata": meta(settings, &settings.name, "webhook", false),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": settings.name},
        "subjects": [{
            "kind": "ServiceAccount",
            "name": settings.name,
            "namespace": settings.namespace
        }]
    })
}

/// Lets every holder of the built-in `view` role read credential specs (not `use` them).
pub fn view_role(settings: &Settings) -> Value {
    let mut meta = meta(settings, &names::view_role(&settings.name), "rbac", false);
    meta["labels"][names::AGGREGATE_TO_VIEW_LABEL] = json!("true");
    json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"),
        "kind": "ClusterRole",
        "metadata": meta,
        "rules": [{
            "apiGroups": [core_names::GROUP],
            "resources": [core_names::RESOURCE],
            "verbs": ["get", "list", "watch"]
        }]
    })
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The self-signed serving certificate, its key and CA, and the renewal's staged and previous
/// ones when there are any.
pub fn tls_secret(settings: &Settings, tls: &TlsMaterial) -> Value {
    let mut meta = meta(
        settings,
        &names::tls_secret(&settings.name),
        "certificate",
        true,
    );
    let secret = tls.secret.clone().unwrap_or_default();
    let annotations = secret.annotations();
    if !annotations.is_empty() {
        meta["annotations"] = json!(annotations);
    }
    let data: Map<String, Value> = secret
        .data()
        .into_iter()
        .map(|(k, v)| (k, json!(b64(&v))))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "kubernetes.io/tls",
        "data": data
    })
}

/// Self-signed mode: the replicas renew their certificates, so they may read and replace
/// that one Secret (and nothing else in the namespace).
pub fn certificates_role(settings: &Settings) -> Value {
    json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"),
        "kind": "Role",
        "metadata": meta(settings, &names::certificates_role(&settings.name), "certificate", true),
        "rules": [{
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [names::tls_secret(&settings.name)],
            "verbs": ["get", "update"]
        }]
    })
}

pub fn certificates_role_binding(settings: &Settings) -> Value {
    json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"),
        "kind": "RoleBinding",
        "metadata": meta(settings, &names::certificates_role(&settings.name), "certificate", true),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": names::certificates_role(&settings.name)},
        "subjects": [{
            "kind": "ServiceAccount",
            "name": settings.name,
            "namespace": settings.namespace
        }]
    })
}

/// cert-manager: a self-signed Issuer in the namespace, used only to sign the CA.
pub fn issuer(settings: &Settings) -> Value {
    json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": meta(settings, &names::issuer(&settings.name), "certificate", true),
        "spec": {"selfSigned": {}}
    })
}

/// cert-manager: the CA, ten years, renewed a year ahead with the same key
/// (`rotationPolicy: Never`), so certificates it signed before a renewal still verify after it.
/// Its certificate is what cainjector puts in `caBundle`: a serving renewal changes nothing
/// there, so the kubelet's Secret sync and the injector never race.
pub fn ca_certificate(settings: &Settings) -> Value {
    let name = names::ca_certificate(&settings.name);
    json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": meta(settings, &name, "certificate", true),
        "spec": {
            "isCA": true,
            "secretName": name,
            "commonName": format!("{} CA", settings.name),
            "duration": "87600h",
            "renewBefore": "8760h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Never"},
            "issuerRef": {
                "group": "cert-manager.io",
                "kind": "Issuer",
                "name": names::issuer(&settings.name)
            }
        }
    })
}

/// cert-manager: the Issuer that signs with the CA above.
pub fn ca_issuer(settings: &Settings) -> Value {
    json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": meta(settings, &names::ca_issuer(&settings.name), "certificate", true),
        "spec": {"ca": {"secretName": names::ca_certificate(&settings.name)}}
    })
}

/// cert-manager: the serving certificate, into `<name>-tls`, signed by the CA Issuer and
/// renewed a month before expiry.
pub fn certificate(settings: &Settings) -> Value {
    let secret = names::tls_secret(&settings.name);
    json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": meta(settings, &secret, "certificate", true),
        "spec": {
            "secretName": secret,
            "commonName": settings.serving_names()[0],
            "dnsNames": settings.serving_names(),
            "duration": "8760h",
            "renewBefore": "720h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": ["server auth", "digital signature"],
            "issuerRef": {
                "group": "cert-manager.io",
                "kind": "Issuer",
                "name": names::ca_issuer(&settings.name)
            }
        }
    })
}

/// The client CA (`install --client-ca`), public by nature, so a ConfigMap; the webhook
/// re-reads it when the kubelet updates the volume.
pub fn client_ca(settings: &Settings, pem: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(settings, &names::client_ca(&settings.name), "webhook", true),
        "data": {(names::CA_CERT_KEY): pem}
    })
}

pub fn service(settings: &Settings) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(settings, &settings.name, "webhook", true),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(settings),
            "ports": [{
                "name": names::PORT_NAME,
                "port": names::SERVICE_PORT,
                "targetPort": names::PORT_NAME,
                "protocol": "TCP"
            }]
        }
    })
}

/// The Secret the Deployment mounts.
pub fn serving_secret_name(settings: &Settings) -> String {
    match &settings.certs {
        crate::CertMode::Secret(name) => name.clone(),
        _ => names::tls_secret(&settings.name),
    }
}

pub fn deployment(settings: &Settings) -> Value {
    let mut env = vec![
        json!({"name": "TLS_CRT", "value": format!("{}/{}", names::TLS_MOUNT_PATH, names::TLS_CERT_KEY)}),
        json!({"name": "TLS_KEY", "value": format!("{}/{}", names::TLS_MOUNT_PATH, names::TLS_KEY_KEY)}),
        json!({"name": "HTTPS_PORT", "value": names::CONTAINER_PORT.to_string()}),
    ];
    if let Some(qps) = &settings.qps {
        env.push(json!({"name": "QPS", "value": qps}));
    }
    if let Some(burst) = settings.burst {
        env.push(json!({"name": "BURST", "value": burst.to_string()}));
    }
    if settings.random_hostname {
        env.push(json!({"name": "RANDOM_HOSTNAME", "value": "true"}));
    }
    // The default needs no argument, so a default install renders as before.
    let mut args: Vec<String> = match settings.authorization {
        gmsa_core::rbac_index::AuthorizationMode::Hybrid => Vec::new(),
        mode => vec![format!("--authorization={mode}")],
    };
    if settings.certs == crate::CertMode::SelfSigned {
        args.push(format!(
            "--renew-certs-secret={}",
            names::tls_secret(&settings.name)
        ));
        args.push(format!(
            "--renew-webhook-configuration={}",
            names::webhook_configuration(&settings.name)
        ));
        env.push(json!({"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}));
    }
    let client_ca = settings.client_ca_pem.is_some();
    let mut ports = vec![
        json!({"name": names::PORT_NAME, "containerPort": names::CONTAINER_PORT, "protocol": "TCP"}),
    ];
    let mut mounts = vec![
        json!({"name": names::TLS_VOLUME, "mountPath": names::TLS_MOUNT_PATH, "readOnly": true}),
    ];
    let mut volumes = vec![
        json!({"name": names::TLS_VOLUME, "secret": {"secretName": serving_secret_name(settings)}}),
    ];
    if client_ca {
        args.push(format!(
            "--client-ca={}/{}",
            names::CLIENT_CA_MOUNT_PATH,
            names::CA_CERT_KEY
        ));
        args.push(format!("--probe-port={}", names::PROBE_PORT));
        ports.push(json!({"name": names::PROBE_PORT_NAME, "containerPort": names::PROBE_PORT, "protocol": "TCP"}));
        mounts.push(json!({"name": names::CLIENT_CA_VOLUME, "mountPath": names::CLIENT_CA_MOUNT_PATH, "readOnly": true}));
        volumes.push(json!({"name": names::CLIENT_CA_VOLUME, "configMap": {"name": names::client_ca(&settings.name)}}));
    }
    // With a client CA the main port demands a certificate the kubelet does not have.
    let (probe_port, probe_scheme) = if client_ca {
        (names::PROBE_PORT_NAME, "HTTP")
    } else {
        (names::PORT_NAME, "HTTPS")
    };
    let probe = |path: &str, period: i64, failures: i64| {
        json!({
            "httpGet": {"path": path, "port": probe_port, "scheme": probe_scheme},
            "periodSeconds": period,
            "timeoutSeconds": 3,
            "failureThreshold": failures
        })
    };
    let mut pod_spec = json!({
        "serviceAccountName": settings.name,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": names::NON_ROOT_UID,
            "runAsGroup": names::NON_ROOT_UID,
            "seccompProfile": {"type": "RuntimeDefault"}
        },
        "nodeSelector": settings.node_selector,
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector_labels(settings)}
        }],
        "containers": [{
            "name": names::CONTAINER_NAME,
            "image": settings.image,
            "imagePullPolicy": "IfNotPresent",
            "env": env,
            "ports": ports,
            "readinessProbe": probe(core_names::paths::READYZ, 5, 3),
            "livenessProbe": probe(core_names::paths::HEALTH, 10, 3),
            "resources": {
                "requests": {"cpu": settings.resources.requests_cpu, "memory": settings.resources.requests_memory},
                "limits": {"memory": settings.resources.limits_memory}
            },
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "privileged": false,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"}
            },
            "volumeMounts": mounts
        }],
        "volumes": volumes
    });
    if !args.is_empty() {
        pod_spec["containers"][0]["args"] = json!(args);
    }
    if !settings.tolerations.is_empty() {
        pod_spec["tolerations"] = json!(settings.tolerations);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(settings, &settings.name, "webhook", true),
        "spec": {
            "replicas": settings.replicas,
            "selector": {"matchLabels": selector_labels(settings)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels(settings, "webhook")},
                "spec": pod_spec
            }
        }
    })
}

/// At most one replica down at a time for voluntary disruptions (drains), whatever the count.
pub fn pod_disruption_budget(settings: &Settings) -> Value {
    let api_version = if settings.kube_version.at_least(KubeVersion::POLICY_V1) {
        "policy/v1"
    } else {
        "policy/v1beta1"
    };
    json!({
        "apiVersion": api_version,
        "kind": "PodDisruptionBudget",
        "metadata": meta(settings, &settings.name, "webhook", true),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(settings)}
        }
    })
}

/// Alerts on `gmsa_webhook_certificate_expiry_seconds`: a warning under 30 days (renewal
/// should have happened by then in every certificate mode), critical once expired (the API
/// server refuses the webhook's TLS: GMSA pods, and on servers before 1.28 every pod, fail).
pub fn prometheus_rule(settings: &Settings) -> Value {
    let selector = format!(
        "gmsa_webhook_certificate_expiry_seconds{{namespace=\"{}\"}}",
        settings.namespace
    );
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": meta(settings, &settings.name, "webhook", true),
        "spec": {
            "groups": [{
                "name": "gmsa-webhook.certificates",
                "rules": [
                    {
                        "alert": "GmsaWebhookCertificateExpiresSoon",
                        "expr": format!("min by (namespace, pod) ({selector}) < 30 * 24 * 3600"),
                        "for": "1h",
                        "labels": {"severity": "warning"},
                        "annotations": {
                            "summary": "The GMSA webhook's serving certificate expires in under 30 days",
                            "description": "Pod {{ $labels.pod }} serves a certificate that expires in {{ $value | humanizeDuration }}. Run kubectl gmsa doctor; for self-signed certificates, kubectl gmsa install --apply --rotate-certs."
                        }
                    },
                    {
                        "alert": "GmsaWebhookCertificateExpired",
                        "expr": format!("min by (namespace, pod) ({selector}) <= 0"),
                        "labels": {"severity": "critical"},
                        "annotations": {
                            "summary": "The GMSA webhook's serving certificate has expired",
                            "description": "Pod {{ $labels.pod }} serves an expired certificate: the API server cannot call the webhook, so GMSA pods are refused. Run kubectl gmsa doctor."
                        }
                    }
                ]
            }]
        }
    })
}

/// A HostProcess DaemonSet on Windows nodes that sets `EnableCompartmentNamespace=1`, which
/// the documentation asks for when pods reach SMB shares by host name, then sleeps (a
/// DaemonSet's pods must keep running). Pods created before the key was set must be
/// recreated to pick it up.
pub fn node_setup(settings: &Settings) -> Value {
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
    let mut selector = Map::new();
    for (k, v) in selector_labels(settings) {
        selector.insert(k, json!(v));
    }
    selector.insert(names::LABEL_COMPONENT.into(), json!("node-setup"));
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta(settings, &name, "node-setup", true),
        "spec": {
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels(settings, "node-setup")},
                "spec": {
                    "nodeSelector": {"kubernetes.io/os": "windows"},
                    "hostNetwork": true,
                    "securityContext": {
                        "windowsOptions": {
                            "hostProcess": true,
                            "runAsUserName": "NT AUTHORITY\\SYSTEM"
                        }
                    },
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{
                        "name": "set-compartment-namespace",
                        "image": settings.node_setup_image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["powershell.exe", "-NoProfile", "-Command", script],
                        "resources": {
                            "requests": {"cpu": "10m", "memory": "32Mi"},
                            "limits": {"memory": "128Mi"}
                        }
                    }]
                }
            }
        }
    })
}
