//! The only objects built as untyped JSON: kinds of other projects' CRDs (cert-manager's
//! Issuer and Certificate, the Prometheus Operator's PrometheusRule), which k8s-openapi has
//! no types for. Nothing checks their fields at compile time, only the tests that pin them
//! (and the chart's copy), so built-in kinds never come here: `json!` is a disallowed macro
//! everywhere else (`clippy.toml`).
#![allow(clippy::disallowed_macros)]

use serde_json::{json, Value};

use crate::{meta, names, Settings};

/// The API versions of these kinds, as [`Kind::info`](crate::Kind::info) gives them too.
pub const CERT_MANAGER_API_VERSION: &str = "cert-manager.io/v1";
pub const PROMETHEUS_API_VERSION: &str = "monitoring.coreos.com/v1";

/// Their metadata is typed all the same.
fn metadata(settings: &Settings, name: &str, component: &str) -> Value {
    serde_json::to_value(meta::namespaced(settings, name, component)).unwrap_or_default()
}

/// cert-manager: a self-signed Issuer in the namespace, used only to sign the CA.
pub fn issuer(settings: &Settings) -> Value {
    json!({
        "apiVersion": CERT_MANAGER_API_VERSION,
        "kind": "Issuer",
        "metadata": metadata(settings, &names::issuer(&settings.name), "certificate"),
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
        "apiVersion": CERT_MANAGER_API_VERSION,
        "kind": "Certificate",
        "metadata": metadata(settings, &name, "certificate"),
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
        "apiVersion": CERT_MANAGER_API_VERSION,
        "kind": "Issuer",
        "metadata": metadata(settings, &names::ca_issuer(&settings.name), "certificate"),
        "spec": {"ca": {"secretName": names::ca_certificate(&settings.name)}}
    })
}

/// cert-manager: the serving certificate, into `<name>-tls`, signed by the CA Issuer and
/// renewed a month before expiry.
pub fn certificate(settings: &Settings) -> Value {
    let secret = names::tls_secret(&settings.name);
    json!({
        "apiVersion": CERT_MANAGER_API_VERSION,
        "kind": "Certificate",
        "metadata": metadata(settings, &secret, "certificate"),
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

/// Alerts on `gmsa_webhook_certificate_expiry_seconds`: a warning under 30 days (renewal
/// should have happened by then in every certificate mode), critical once expired (the API
/// server refuses the webhook's TLS: GMSA pods, and on servers before 1.28 every pod, fail).
pub fn prometheus_rule(settings: &Settings) -> Value {
    let selector = format!(
        "gmsa_webhook_certificate_expiry_seconds{{namespace=\"{}\"}}",
        settings.namespace
    );
    json!({
        "apiVersion": PROMETHEUS_API_VERSION,
        "kind": "PrometheusRule",
        "metadata": metadata(settings, &settings.name, "webhook"),
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
