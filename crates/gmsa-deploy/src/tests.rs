use serde_json::{json, Value};

use super::*;

fn tls() -> TlsMaterial {
    TlsMaterial {
        ca_bundle_pem: "CA1\nCA2\n".into(),
        secret: Some(SelfSignedSecret {
            current: Some(gmsa_tls::self_signed::Pair {
                ca_pem: "CA2\n".into(),
                cert_pem: "CERT\n".into(),
                key_pem: "KEY\n".into(),
            }),
            ..SelfSignedSecret::default()
        }),
        ..TlsMaterial::default()
    }
}

fn find<'m>(m: &'m Manifest, kind: &str) -> &'m Value {
    m.objects()
        .map(|o| &o.body)
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn kinds(m: &Manifest) -> Vec<String> {
    m.objects()
        .map(|o| o.body["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn default_install_in_apply_order() {
    let m = render(&Settings::default(), Some(&tls())).unwrap();
    assert_eq!(
        kinds(&m),
        [
            "CustomResourceDefinition",
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration"
        ]
    );
    let ns = find(&m, "Namespace");
    assert_eq!(ns["metadata"]["labels"]["gmsa-webhook"], "disabled");
    let secret = find(&m, "Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["data"]["ca.crt"], "Q0EyCg==");
    assert_eq!(secret["data"].as_object().unwrap().len(), 3);
}

#[test]
fn every_object_of_every_mode_is_a_listed_kind() {
    let everything = Settings {
        aggregate_to_view: true,
        node_setup: true,
        prometheus_rule: true,
        client_ca_pem: Some("PEM".into()),
        ..Settings::default()
    };
    let old = Settings {
        kube_version: KubeVersion::new(1, 20),
        node_setup: false,
        ..everything.clone()
    };
    for certs in [
        CertMode::SelfSigned,
        CertMode::CertManager,
        CertMode::Secret("mine".into()),
    ] {
        for settings in [&everything, &old] {
            let settings = Settings {
                certs: certs.clone(),
                ..settings.clone()
            };
            let owned = owned(&settings);
            for object in render(&settings, Some(&tls())).unwrap().objects() {
                // Typed objects write their own apiVersion and kind; the kind stated beside
                // them is the same, and so are the name and namespace.
                let body = &object.body;
                let info = object.id.kind.info();
                assert_eq!(body["apiVersion"], info.api_version, "{certs}: {body}");
                assert_eq!(body["kind"], info.kind, "{certs}: {body}");
                assert_eq!(body["metadata"]["name"], object.id.name.as_str());
                assert_eq!(
                    body["metadata"]["namespace"].as_str(),
                    object.id.namespace(),
                    "{body}"
                );
                assert_eq!(info.namespaced, object.id.namespace.is_some(), "{body}");
                assert!(
                    owned.iter().any(|o| o.object == object.id),
                    "{certs}: {} is not in the list of what an install owns",
                    object.id
                );
            }
        }
    }
}

#[test]
fn webhooks_cover_pods_ephemeral_containers_and_credspecs() {
    let m = render(&Settings::default(), Some(&tls())).unwrap();
    let mutating = &find(&m, "MutatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(mutating["failurePolicy"], "Fail");
    assert_eq!(mutating["sideEffects"], "None");
    assert_eq!(mutating["timeoutSeconds"], 5);
    assert_eq!(
        mutating["admissionReviewVersions"],
        json!(["v1", "v1beta1"])
    );
    assert_eq!(mutating["rules"][0]["operations"], json!(["CREATE"]));
    assert_eq!(
        mutating["rules"][1]["resources"],
        json!(["pods/ephemeralcontainers"])
    );
    assert_eq!(mutating["clientConfig"]["service"]["path"], "/mutate");
    assert_eq!(
        mutating["clientConfig"]["caBundle"],
        json!("Q0ExCkNBMgo="),
        "both CAs while rotating"
    );
    assert_eq!(
        mutating["namespaceSelector"]["matchExpressions"][1],
        json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["gmsa-system"]})
    );
    assert_eq!(mutating["matchConditions"][0]["name"], "mentions-gmsa");

    let validating = &find(&m, "ValidatingWebhookConfiguration")["webhooks"];
    assert_eq!(
        validating[0]["rules"][0]["operations"],
        json!(["CREATE", "UPDATE"])
    );
    assert_eq!(
        validating[1]["clientConfig"]["service"]["path"],
        "/validate-credspec"
    );
    assert_eq!(
        validating[1]["rules"][0]["resources"],
        json!(["gmsacredentialspecs"])
    );
    assert!(validating[1].get("matchConditions").is_none());
    assert_eq!(
        validating[0]["namespaceSelector"]["matchExpressions"],
        json!([{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["gmsa-system"]}]),
        "no label skips authorization"
    );
    assert_eq!(
        mutating["namespaceSelector"]["matchExpressions"][0]["key"], "gmsa-webhook",
        "mutation can be opted out of"
    );
}

#[test]
fn older_clusters_get_what_they_understand() {
    let settings = Settings {
        kube_version: KubeVersion::new(1, 20),
        ..Settings::default()
    };
    let m = render(&settings, Some(&tls())).unwrap();
    assert_eq!(
        find(&m, "PodDisruptionBudget")["apiVersion"],
        "policy/v1beta1"
    );
    let webhook = &find(&m, "MutatingWebhookConfiguration")["webhooks"][0];
    assert!(webhook.get("matchConditions").is_none());
    assert_eq!(
        webhook["namespaceSelector"]["matchExpressions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Before 1.21 the label is the only way to skip the webhook's own namespace: it stays on
    // both webhooks.
    let validating = &find(&m, "ValidatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(
        validating["namespaceSelector"]["matchExpressions"][0]["key"],
        "gmsa-webhook"
    );
    let forced = Settings {
        match_conditions: Some(true),
        ..settings
    };
    assert!(matches!(
        render(&forced, Some(&tls())),
        Err(SettingsError::MatchConditions(_))
    ));
}

#[test]
fn cel_expression_guards_every_step() {
    let cel = match_condition_expression();
    for needle in [
        "object != null",
        "oldObject != null",
        "has(object.spec.initContainers) && object.spec.initContainers.exists(c,",
        "has(oldObject.spec.ephemeralContainers)",
        "has(c.securityContext.windowsOptions.gmsaCredentialSpecName)",
        "has(object.spec.securityContext.windowsOptions.gmsaCredentialSpec)",
    ] {
        assert!(cel.contains(needle), "{needle} missing from {cel}");
    }
    assert_eq!(cel.matches('(').count(), cel.matches(')').count());
}

#[test]
fn cert_manager_and_url_modes() {
    let settings = Settings {
        certs: CertMode::CertManager,
        webhook_url: Some("https://127.0.0.1:9443".into()),
        ..Settings::default()
    };
    let m = render(&settings, None).unwrap();
    assert!(kinds(&m).contains(&"Certificate".to_string()));
    assert!(!kinds(&m).contains(&"Secret".to_string()));
    let config = find(&m, "ValidatingWebhookConfiguration");
    // The CA is injected, not the serving certificate: a serving renewal leaves caBundle as
    // it is, so the injector and the kubelet's Secret sync cannot race.
    assert_eq!(
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "gmsa-system/gmsa-webhook-ca"
    );
    let certificates: Vec<&Value> = m
        .objects()
        .filter(|o| o.id.kind == Kind::Certificate)
        .map(|o| &o.body)
        .collect();
    let issuers: Vec<&Value> = m
        .objects()
        .filter(|o| o.id.kind == Kind::Issuer)
        .map(|o| &o.body)
        .collect();
    assert_eq!(certificates.len(), 2);
    let (ca, serving) = (certificates[0], certificates[1]);
    assert_eq!(ca["metadata"]["name"], "gmsa-webhook-ca");
    assert_eq!(ca["spec"]["isCA"], true);
    assert_eq!(ca["spec"]["privateKey"]["rotationPolicy"], "Never");
    assert_eq!(ca["spec"]["issuerRef"]["name"], "gmsa-webhook-selfsigned");
    assert_eq!(serving["metadata"]["name"], "gmsa-webhook-tls");
    assert_eq!(serving["spec"]["issuerRef"]["name"], "gmsa-webhook-ca");
    assert_eq!(
        issuers
            .iter()
            .map(|i| (i["metadata"]["name"].clone(), i["spec"].clone()))
            .collect::<Vec<_>>(),
        vec![
            (json!("gmsa-webhook-selfsigned"), json!({"selfSigned": {}})),
            (
                json!("gmsa-webhook-ca"),
                json!({"ca": {"secretName": "gmsa-webhook-ca"}})
            ),
        ]
    );
    // Applied in dependency order: each issuer before what it signs.
    let position = |kind: &str, name: &str| {
        m.objects()
            .position(|o| o.body["kind"] == kind && o.body["metadata"]["name"] == name)
            .unwrap()
    };
    assert!(
        position("Issuer", "gmsa-webhook-selfsigned") < position("Certificate", "gmsa-webhook-ca")
    );
    assert!(position("Certificate", "gmsa-webhook-ca") < position("Issuer", "gmsa-webhook-ca"));
    assert!(position("Issuer", "gmsa-webhook-ca") < position("Certificate", "gmsa-webhook-tls"));
    assert_eq!(
        config["webhooks"][0]["clientConfig"],
        json!({"url": "https://127.0.0.1:9443/validate"})
    );
    assert_eq!(
        serving["spec"]["dnsNames"],
        json!([
            "gmsa-webhook.gmsa-system.svc",
            "gmsa-webhook.gmsa-system.svc.cluster.local",
            "127.0.0.1"
        ])
    );

    let secret_mode = Settings {
        certs: "secret:mine".parse().unwrap(),
        ..Settings::default()
    };
    assert!(matches!(
        render(&secret_mode, None),
        Err(SettingsError::NoCaBundle(_))
    ));
    let m = render(&secret_mode, Some(&tls())).unwrap();
    assert!(!kinds(&m).contains(&"Secret".to_string()));
    assert_eq!(
        find(&m, "Deployment")["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "mine"
    );
    assert!("secret:".parse::<CertMode>().is_err());
    assert!("vault".parse::<CertMode>().is_err());
}

#[test]
fn deployment_is_locked_down() {
    let settings = Settings {
        random_hostname: true,
        qps: Some("20".into()),
        ..Settings::default()
    };
    let m = render(&settings, Some(&tls())).unwrap();
    let spec = &find(&m, "Deployment")["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(spec["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["scheme"], "HTTPS");
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(env.contains(&("RANDOM_HOSTNAME".into(), "true".into())));
    assert!(env.contains(&("HTTPS_PORT".into(), "8443".into())));
    assert!(env.contains(&("TLS_CRT".into(), "/etc/gmsa-webhook/tls/tls.crt".into())));
    assert!(env.contains(&("QPS".into(), "20".into())));
}

#[test]
fn rbac_is_least_privilege() {
    let m = render(&Settings::default(), Some(&tls())).unwrap();
    let role = find(&m, "ClusterRole");
    let verbs: Vec<&Value> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["verbs"])
        .collect();
    assert_eq!(
        verbs,
        [
            &json!(["get", "list", "watch"]),
            &json!(["list", "watch"]),
            &json!(["create"]),
            &json!(["get", "update"])
        ]
    );
    // The renewal's writes are limited to our own Secret and configurations by name.
    assert_eq!(
        role["rules"][3]["resourceNames"],
        json!(["gmsa-webhook-admission"])
    );
    let secret_role = find(&m, "Role");
    assert_eq!(
        secret_role["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["gmsa-webhook-tls"], "verbs": ["get", "update"]}])
    );
    let binding = find(&m, "RoleBinding");
    assert_eq!(binding["roleRef"]["name"], "gmsa-webhook-certificates");
    assert_eq!(binding["subjects"][0]["name"], "gmsa-webhook");
    let args = &find(&m, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(
        args,
        &json!([
            "--renew-certs-secret=gmsa-webhook-tls",
            "--renew-webhook-configuration=gmsa-webhook-admission"
        ])
    );
    // Other modes renew elsewhere: no write access, no renewal flags.
    let secret_mode = Settings {
        certs: CertMode::Secret("mine".into()),
        ..Settings::default()
    };
    let m = render(&secret_mode, Some(&tls())).unwrap();
    assert_eq!(
        find(&m, "ClusterRole")["rules"].as_array().unwrap().len(),
        3
    );
    assert!(!kinds(&m).contains(&"Role".to_string()));
    let container = &find(&m, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        container["args"].as_array().is_none_or(|a| a.is_empty()),
        "{container}"
    );
}

#[test]
fn node_setup_is_a_host_process_daemonset() {
    let settings = Settings {
        node_setup: true,
        ..Settings::default()
    };
    let m = render(&settings, Some(&tls())).unwrap();
    let ds = find(&m, "DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(
        spec["securityContext"]["windowsOptions"]["hostProcess"],
        true
    );
    assert_eq!(spec["nodeSelector"]["kubernetes.io/os"], "windows");
    let command = spec["containers"][0]["command"].to_string();
    assert!(command.contains("EnableCompartmentNamespace"), "{command}");
    assert!(command.contains(r"HKLM\\SYSTEM\\CurrentControlSet\\Services\\hns\\State"));
    let old = Settings {
        kube_version: KubeVersion::new(1, 25),
        ..settings
    };
    assert!(render(&old, Some(&tls())).is_err());
}

#[test]
fn the_prometheus_rule_alerts_on_certificate_expiry() {
    let plain = render(&Settings::default(), Some(&tls())).unwrap();
    assert!(!kinds(&plain).contains(&"PrometheusRule".to_string()));
    let settings = Settings {
        prometheus_rule: true,
        ..Settings::default()
    };
    let m = render(&settings, Some(&tls())).unwrap();
    let rule = find(&m, "PrometheusRule");
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let alerts: Vec<(&str, &str, &str)> = rules
        .iter()
        .map(|r| {
            (
                r["alert"].as_str().unwrap(),
                r["expr"].as_str().unwrap(),
                r["labels"]["severity"].as_str().unwrap(),
            )
        })
        .collect();
    let selector = r#"gmsa_webhook_certificate_expiry_seconds{namespace="gmsa-system"}"#;
    assert_eq!(
        alerts,
        vec![
            (
                "GmsaWebhookCertificateExpiresSoon",
                &*format!("min by (namespace, pod) ({selector}) < 30 * 24 * 3600"),
                "warning"
            ),
            (
                "GmsaWebhookCertificateExpired",
                &*format!("min by (namespace, pod) ({selector}) <= 0"),
                "critical"
            ),
        ]
    );
}

#[test]
fn a_client_ca_moves_probes_to_the_plain_port() {
    let settings = Settings {
        client_ca_pem: Some(
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        ),
        ..Settings::default()
    };
    let m = render(&settings, Some(&tls())).unwrap();
    let config_map = find(&m, "ConfigMap");
    assert_eq!(config_map["metadata"]["name"], "gmsa-webhook-client-ca");
    assert!(config_map["data"]["ca.crt"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    let container = &find(&m, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["args"],
        json!([
            "--renew-certs-secret=gmsa-webhook-tls",
            "--renew-webhook-configuration=gmsa-webhook-admission",
            "--client-ca=/etc/gmsa-webhook/client-ca/ca.crt",
            "--probe-port=8081"
        ])
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "probes", "{probe}");
        assert_eq!(container[probe]["httpGet"]["scheme"], "HTTP", "{probe}");
    }
    assert_eq!(container["ports"][1]["containerPort"], 8081);
    // Without one, nothing changes.
    let plain = render(&Settings::default(), Some(&tls())).unwrap();
    assert!(!kinds(&plain).contains(&"ConfigMap".to_string()));
    let container = &find(&plain, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
    assert_eq!(
        container["args"].as_array().unwrap().len(),
        2,
        "renewal only"
    );
}
