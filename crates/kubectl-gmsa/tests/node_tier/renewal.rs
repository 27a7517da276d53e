//! Self-signed certificates renewed by the replicas inside the cluster, the kubelet delivering
//! the renewed Secret to each pod's volume, while GMSA pods are created without pause and every
//! replica is handshaken with against the caBundle the API server holds at that moment.

use std::collections::BTreeMap;
use std::sync::Mutex;

use base64::Engine as _;
use gmsa_tls::self_signed::{pem_blocks, CA_CERT_KEY, NEXT_CA_KEY, PREVIOUS_CA_KEY, TLS_CERT_KEY};

use super::*;

/// The name the API server checks the webhook's certificate for.
const SERVICE_NAME: &str = "gmsa-webhook.gmsa-system.svc";

/// Makes the replicas renew once, now: the installed certificate (365 days) is within 400 days
/// of its end, a renewed one (401 days) is not. The replaced CA stays trusted for 60 s, several
/// times what this kubelet (syncFrequency 10 s) takes to deliver a Secret.
const RENEW_NOW: [&str; 4] = [
    "--renew-before=400d",
    "--renewed-cert-lifetime=401d",
    "--previous-ca-grace=60s",
    "--renew-check-interval=2s",
];

fn decode(b64: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_str().unwrap_or_default())
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

impl Env<'_> {
    /// The webhook's TLS Secret, decoded.
    fn tls_secret(&self) -> BTreeMap<String, String> {
        let secret = self.json(&["get", "secret", "-n", SYSTEM_NS, "gmsa-webhook-tls"]);
        secret["data"]
            .as_object()
            .map(|data| data.iter().map(|(k, v)| (k.clone(), decode(v))).collect())
            .unwrap_or_default()
    }

    /// Every caBundle of both webhook configurations, decoded.
    fn ca_bundles(&self) -> Vec<String> {
        let mut bundles = Vec::new();
        for kind in [
            "mutatingwebhookconfiguration",
            "validatingwebhookconfiguration",
        ] {
            let config = self.json(&["get", kind, "gmsa-webhook-admission"]);
            for hook in config["webhooks"].as_array().into_iter().flatten() {
                bundles.push(decode(&hook["clientConfig"]["caBundle"]));
            }
        }
        bundles
    }

    /// The IPs of the webhook's running pods that are not terminating.
    fn serving_pod_ips(&self) -> Vec<String> {
        let pods = self.json(&["get", "pods", "-n", SYSTEM_NS, "-l", WEBHOOK_PODS]);
        pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| p["status"]["phase"] == "Running")
            .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_owned))
            .collect()
    }
}

/// What the handshakes saw.
#[derive(Default)]
struct Handshakes {
    count: u64,
    failures: Vec<String>,
    /// When each pod IP first presented a certificate of the renewed CA.
    renewed_at: BTreeMap<String, Duration>,
}

/// The replicas renew their certificate once under load: the staged CA is trusted by every
/// caBundle before any replica serves it, the kubelet delivers the promoted pair to every pod,
/// and the replaced CA is dropped after its grace; not one admission or handshake fails.
/// `install --apply` afterwards keeps the renewed pair.
pub(crate) fn certificates_renew_under_load(env: &Env) {
    env.rollout_status();
    let installed = env.tls_secret();
    let load = PodLoad::start(env.node.api(), NS, &gmsa_pod("webapp"), MARKER, true, 3);
    thread::sleep(Duration::from_secs(2));
    let patch: Vec<Value> = RENEW_NOW
        .iter()
        .map(|arg| json!({"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": arg}))
        .collect();
    env.kubectl(&[
        "patch",
        "deployment",
        "-n",
        SYSTEM_NS,
        DEPLOYMENT,
        "--type=json",
        "-p",
        &Value::Array(patch).to_string(),
    ]);
    let began = Instant::now();
    let stop = AtomicBool::new(false);
    let renewed_ca: Mutex<Option<String>> = Mutex::new(None);
    let handshakes = Mutex::new(Handshakes::default());
    let (promoted, delivered, retired) = thread::scope(|s| {
        // The API server may open a connection to any replica at any moment: each one's
        // certificate must verify against a caBundle stored around that handshake.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for ip in env.serving_pod_ips() {
                    let before = env.ca_bundles();
                    let Ok(target) = kubectl_gmsa::probe::target(&format!("https://{ip}:8443"))
                    else {
                        continue;
                    };
                    // A pod that stops between the listing and the handshake is not serving.
                    let Ok(answer) = kubectl_gmsa::probe::get(&target, "/health") else {
                        continue;
                    };
                    let after = env.ca_bundles();
                    let now = time::OffsetDateTime::now_utc();
                    let verifies = |bundle: &str| {
                        gmsa_tls::verify_serving_chain(bundle, &answer.chain, SERVICE_NAME, now)
                            .is_ok()
                    };
                    let trusted =
                        before.iter().all(|b| verifies(b)) || after.iter().all(|b| verifies(b));
                    let mut seen = handshakes.lock().unwrap();
                    seen.count += 1;
                    if !trusted {
                        seen.failures.push(format!(
                            "+{:.1} s: {ip} serves a certificate some caBundle does not trust",
                            began.elapsed().as_secs_f64()
                        ));
                    }
                    if let Some(ca) = renewed_ca.lock().unwrap().as_deref() {
                        if verifies(ca) && !seen.renewed_at.contains_key(&ip) {
                            seen.renewed_at.insert(ip.clone(), began.elapsed());
                        }
                    }
                }
                thread::sleep(Duration::from_millis(200));
            }
        });
        let mut promoted = None;
        env.wait_for(
            "the renewed pair's promotion",
            Duration::from_secs(120),
            || {
                let secret = env.tls_secret();
                if secret.get(TLS_CERT_KEY) == installed.get(TLS_CERT_KEY) {
                    return Err(format!("keys {:?}", secret.keys()));
                }
                assert!(
                    secret.contains_key(PREVIOUS_CA_KEY),
                    "promoted without keeping the replaced CA trusted: keys {:?}",
                    secret.keys()
                );
                *renewed_ca.lock().unwrap() = secret.get(CA_CERT_KEY).cloned();
                promoted = Some(began.elapsed());
                Ok(())
            },
        );
        let mut delivered = None;
        env.wait_for(
            "every replica serving the renewed certificate",
            Duration::from_secs(90),
            || {
                let ips = env.serving_pod_ips();
                let seen = handshakes.lock().unwrap();
                let waiting: Vec<&String> = ips
                    .iter()
                    .filter(|ip| !seen.renewed_at.contains_key(*ip))
                    .collect();
                if waiting.is_empty() && ips.len() == 2 {
                    delivered = Some(began.elapsed());
                    Ok(())
                } else {
                    Err(format!(
                        "{} of {} replicas still on the installed pair",
                        waiting.len(),
                        ips.len()
                    ))
                }
            },
        );
        let mut retired = None;
        env.wait_for("the replaced CA dropped", Duration::from_secs(150), || {
            let secret = env.tls_secret();
            let ca = pem_blocks(&secret[CA_CERT_KEY]);
            let bundles = env.ca_bundles();
            if !secret.contains_key(PREVIOUS_CA_KEY)
                && !secret.contains_key(NEXT_CA_KEY)
                && bundles.iter().all(|b| pem_blocks(b) == ca)
            {
                retired = Some(began.elapsed());
                Ok(())
            } else {
                Err(format!(
                    "keys {:?}, bundles of {:?} CAs",
                    secret.keys(),
                    bundles
                        .iter()
                        .map(|b| pem_blocks(b).len())
                        .collect::<Vec<_>>()
                ))
            }
        });
        // A few more handshakes against the single CA left.
        thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        (promoted.unwrap(), delivered.unwrap(), retired.unwrap())
    });
    let tally = load.stop();
    let handshakes = handshakes.into_inner().unwrap();
    let lags: Vec<String> = handshakes
        .renewed_at
        .values()
        .map(|t| format!("{:.1} s", t.saturating_sub(promoted).as_secs_f64()))
        .collect();
    eprintln!(
        "node tier: renewal: promoted at +{:.1} s, every replica serving it at +{:.1} s (kubelet \
         delivery after the promotion: {}), the replaced CA dropped at +{:.1} s; {} handshakes",
        promoted.as_secs_f64(),
        delivered.as_secs_f64(),
        lags.join(", "),
        retired.as_secs_f64(),
        handshakes.count
    );
    assert!(
        handshakes.failures.is_empty(),
        "{} handshakes against an untrusted certificate:\n{}",
        handshakes.failures.len(),
        handshakes.failures.join("\n")
    );
    assert_clean("a certificate renewal", &tally);

    // Back to the rendered arguments; the renewed pair is kept, not replaced.
    let renewed = env.tls_secret();
    env.gmsa_ok(&["install", "--apply", "--force-conflicts"]);
    env.rollout_status();
    assert_eq!(
        env.tls_secret().get(TLS_CERT_KEY),
        renewed.get(TLS_CERT_KEY),
        "install replaced the renewed certificate"
    );
}
