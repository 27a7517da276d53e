//! The `certificate` and `certificate-expiry` rows: the webhook's serving certificate against
//! the caBundle the API server trusts, and how long it has left.

use base64::Engine as _;
use gmsa_core::names as core_names;
use gmsa_deploy::{names, Kind};
use gmsa_tls::{certificate_validity, pem_certificates, verify_serving_chain};
use kube::Client;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use super::configurations::{Endpoint, Registration};
use super::fixes::{Fixes, InstallFix};
use super::objects::get;
use super::report::Report;
use crate::direct;
use crate::install::certificates as certs;

/// The serving certificate (the Secret's, or what a URL-registered webhook presents) verifies
/// against the configurations' caBundle and is not about to expire. `name` is the
/// configurations' (a URL that does not parse is their row).
pub(super) async fn check(
    client: &Client,
    name: &str,
    registration: &Registration,
    fixes: &Fixes,
    report: &mut Report,
) {
    let reinstall_certs = fixes
        .install(InstallFix::RotateCerts)
        .unwrap_or_else(|| fixes.reinstall());

    // The Secret's certificate, or what the webhook at the URL presents.
    let (chain, server_name) = match &registration.endpoint {
        Endpoint::Service {
            namespace,
            name: service,
            ..
        } => {
            let deployment = get(client, Kind::Deployment.info(), Some(namespace), service)
                .await
                .ok()
                .flatten();
            let secret_name = deployment
                .as_ref()
                .and_then(|d| d["spec"]["template"]["spec"]["volumes"].as_array().cloned())
                .and_then(|vols| vols.into_iter().find(|v| v["name"] == names::TLS_VOLUME))
                .and_then(|v| v["secret"]["secretName"].as_str().map(str::to_owned))
                .unwrap_or_else(|| names::tls_secret(service));
            let secret = get(client, Kind::Secret.info(), Some(namespace), &secret_name).await;
            let cert = secret.ok().flatten().and_then(|s| {
                let b = s["data"][names::TLS_CERT_KEY].as_str()?.to_owned();
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).ok()?).ok()
            });
            let chain = match cert.as_deref().map(|pem| pem_certificates("tls.crt", pem)) {
                Some(Ok(chain)) => Some(chain),
                Some(Err(e)) => {
                    report.fail(
                        "certificate",
                        &format!("{namespace}/{secret_name}"),
                        e.to_string(),
                        reinstall_certs.clone(),
                    );
                    None
                }
                None => {
                    report.fail(
                        "certificate",
                        &format!("{namespace}/{secret_name}"),
                        "no tls.crt in the webhook's Secret".into(),
                        fixes.reinstall(),
                    );
                    None
                }
            };
            (chain, format!("{service}.{namespace}.svc"))
        }
        Endpoint::Url(url) => match direct::target(url) {
            Ok(target) => {
                let host = target.host.clone();
                match tokio::task::spawn_blocking(move || {
                    direct::get(&target, core_names::paths::HEALTH)
                })
                .await
                {
                    Ok(Ok(answer)) => (Some(answer.chain), host),
                    Ok(Err(e)) => {
                        report.fail(
                            "certificate",
                            url,
                            format!("cannot fetch the certificate: {e}"),
                            "start the webhook, or fix the URL".into(),
                        );
                        (None, host)
                    }
                    Err(e) => {
                        report.fail("certificate", url, e.to_string(), "retry".into());
                        (None, host)
                    }
                }
            }
            Err(e) => {
                report.fail(
                    "webhook-configurations",
                    name,
                    e,
                    "fix clientConfig.url".into(),
                );
                (None, String::new())
            }
        },
    };
    if let Some(chain) = chain {
        check_certificate(
            &chain,
            registration.bundle.as_deref(),
            &server_name,
            &reinstall_certs,
            report,
        );
    }
}

/// `bundle` verifies `chain` for `server_name`, and the certificate has time left.
fn check_certificate(
    chain: &[CertificateDer<'static>],
    bundle: Option<&str>,
    server_name: &str,
    fix: &str,
    report: &mut Report,
) {
    let now = OffsetDateTime::now_utc();
    match bundle {
        None => report.fail(
            "certificate",
            server_name,
            "the webhook configuration has no caBundle".into(),
            fix.into(),
        ),
        Some(bundle) => match verify_serving_chain(bundle, chain, server_name, now) {
            Ok(()) => report.pass(
                "certificate",
                server_name,
                "caBundle verifies the serving certificate".into(),
            ),
            Err(e) => report.fail(
                "certificate",
                server_name,
                format!("caBundle does not verify the serving certificate: {e}"),
                fix.into(),
            ),
        },
    }
    match chain.first().map(certificate_validity) {
        Some(Ok(v)) => {
            let left = v.not_after - now;
            let date = v.not_after.date();
            if left.is_negative() {
                report.fail(
                    "certificate-expiry",
                    server_name,
                    format!("expired on {date}"),
                    fix.into(),
                );
            } else if left < certs::renew_before() {
                report.warn(
                    "certificate-expiry",
                    server_name,
                    format!("expires on {date}, in {} days", left.whole_days()),
                    fix.into(),
                );
            } else {
                report.pass(
                    "certificate-expiry",
                    server_name,
                    format!("expires on {date}, in {} days", left.whole_days()),
                );
            }
        }
        Some(Err(e)) => report.fail("certificate-expiry", server_name, e.to_string(), fix.into()),
        None => {}
    }
}
