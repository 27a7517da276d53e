//! The certificate material the cluster keeps: the self-signed Secret and the client CA.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;

use crate::{meta, names, Settings, TlsMaterial};

/// The self-signed serving certificate, its key and CA, and the renewal's staged and previous
/// ones when there are any.
pub fn tls_secret(settings: &Settings, tls: &TlsMaterial) -> Secret {
    let mut meta = meta::namespaced(settings, &names::tls_secret(&settings.name), "certificate");
    let secret = tls.secret.clone().unwrap_or_default();
    let annotations = secret.annotations();
    if !annotations.is_empty() {
        meta.annotations = Some(annotations);
    }
    meta.resource_version = tls.secret_resource_version.clone();
    let data: BTreeMap<String, ByteString> = secret
        .data()
        .into_iter()
        .map(|(k, v)| (k, ByteString(v.into_bytes())))
        .collect();
    Secret {
        metadata: meta,
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The client CA (`install --client-ca`), public by nature, so a ConfigMap; the webhook
/// re-reads it when the kubelet updates the volume.
pub fn client_ca(settings: &Settings, pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta::namespaced(settings, &names::client_ca(&settings.name), "webhook"),
        data: Some(BTreeMap::from([(
            names::CA_CERT_KEY.to_string(),
            pem.to_string(),
        )])),
        ..ConfigMap::default()
    }
}
