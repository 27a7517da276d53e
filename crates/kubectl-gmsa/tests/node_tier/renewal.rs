//! Self-signed certificates renewed by the replicas inside the cluster, the kubelet delivering
//! the renewed Secret to each pod's volume, while GMSA pods are created without pause and every
//! replica is handshaken with against the caBundle the API server holds at that moment.

use std::collections::BTreeMap;
use std::sync::Mutex;

use base64::Engine as _;
use gmsa_tls::self_signed::{
    pem_blocks, Pair, Policy, CA_CERT_KEY, NEXT_CA_KEY, NEXT_CERT_KEY, NEXT_KEY_KEY,
    PREVIOUS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY,
};

use super::*;

/// The name the API server checks the webhook's certificate for.
const SERVICE_NAME: &str = "gmsa-webhook.gmsa-system.svc";

/// Short lifetimes: a pair is renewed when 45 s of its 90 s are left, and the replaced CA stays
/// trusted 30 s after a promotion, three times what this kubelet (syncFrequency 10 s) takes to
/// deliver a Secret, so one renewal follows the other about every 45 s.
const SHORT_LIFETIMES: [&str; 4] = [
    "--renew-before=45s",
    "--renewed-cert-lifetime=90s",
    "--previous-ca-grace=30s",
    "--renew-check-interval=2s",
];

/// A pair lasting 90 s, as a replica would stage it.
fn short_pair(names: &[String]) -> Pair {
    Pair::issue(
        names,
        &Policy {
            cert_lifetime: time::Duration::seconds(90),
            ca_lifetime: time::Duration::seconds(900),
            ..Policy::default()
        },
    )
    .unwrap()
}

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
    /// When each pod IP first presented a certificate of a CA the observer waits for, by
    /// (CA, pod IP).
    first_served: BTreeMap<(String, String), Duration>,
}

/// One promotion, as the observer saw it.
struct Promotion {
    ca: String,
    cert: String,
    at: Duration,
    /// When every replica served it.
    delivered: Duration,
    /// When the replaced CA left the Secret and every caBundle.
    retired: Duration,
}

/// Replicas running with short lifetimes take a pair staged as a replica would stage it
/// through trust and promotion, then renew it on their own when it nears its end, under load:
/// each staged CA is trusted by every caBundle before any replica serves it, the kubelet
/// delivers each promoted pair to every pod, the replaced CA is dropped after its grace, and
/// not one admission or handshake fails. `install --apply` then restores the rendered
/// arguments and replaces the short-lived pair with a long one.
pub(crate) fn certificates_renew_under_load(env: &Env) {
    env.rollout_status();
    let installed = env.tls_secret();
    let names = Pair {
        ca_pem: installed[CA_CERT_KEY].clone(),
        cert_pem: installed[TLS_CERT_KEY].clone(),
        key_pem: installed[TLS_KEY_KEY].clone(),
    }
    .names();
    let load = PodLoad::start(env.node.api(), NS, &gmsa_pod("webapp"), MARKER, true, 3);
    thread::sleep(Duration::from_secs(2));
    let patch: Vec<Value> = SHORT_LIFETIMES
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
    env.rollout_status();

    let staged = short_pair(&names);
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let stage = json!({"data": {
        NEXT_CA_KEY: b64(&staged.ca_pem),
        NEXT_CERT_KEY: b64(&staged.cert_pem),
        NEXT_KEY_KEY: b64(&staged.key_pem),
    }});
    let began = Instant::now();
    env.kubectl(&[
        "patch",
        "secret",
        "-n",
        SYSTEM_NS,
        "gmsa-webhook-tls",
        "--type=merge",
        "-p",
        &stage.to_string(),
    ]);
    let stop = AtomicBool::new(false);
    let watched: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let handshakes = Mutex::new(Handshakes::default());
    let promotions = thread::scope(|s| {
        // The API server may open a connection to any replica at any moment: each one's
        // certificate must verify against every caBundle stored just before or just after.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for ip in env.serving_pod_ips() {
                    let before = env.ca_bundles();
                    let Ok(target) = kubectl_gmsa::direct::target(&format!("https://{ip}:8443"))
                    else {
                        continue;
                    };
                    // A pod that stops between the listing and the handshake is not serving.
                    let Ok(answer) = kubectl_gmsa::direct::get(&target, "/health") else {
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
                    for ca in watched.lock().unwrap().iter() {
                        if verifies(ca) {
                            let elapsed = began.elapsed();
                            seen.first_served
                                .entry((ca.clone(), ip.clone()))
                                .or_insert(elapsed);
                        }
                    }
                }
                thread::sleep(Duration::from_millis(200));
            }
        });
        let mut promotions: Vec<Promotion> = Vec::new();
        for round in 1..=2 {
            let served = promotions
                .last()
                .map_or(installed[TLS_CERT_KEY].clone(), |p| p.cert.clone());
            let mut promoted = None;
            env.wait_for(
                &format!("promotion {round}"),
                Duration::from_secs(120),
                || {
                    let secret = env.tls_secret();
                    if secret.get(TLS_CERT_KEY) == Some(&served) {
                        return Err(format!("keys {:?}", secret.keys()));
                    }
                    assert!(
                        secret.contains_key(PREVIOUS_CA_KEY),
                        "promoted without keeping the replaced CA trusted: keys {:?}",
                        secret.keys()
                    );
                    watched.lock().unwrap().push(secret[CA_CERT_KEY].clone());
                    promoted = Some((
                        secret[CA_CERT_KEY].clone(),
                        secret[TLS_CERT_KEY].clone(),
                        began.elapsed(),
                    ));
                    Ok(())
                },
            );
            let (ca, cert, at) = promoted.unwrap();
            let mut delivered = None;
            env.wait_for(
                &format!("every replica serving promotion {round}"),
                Duration::from_secs(90),
                || {
                    let ips = env.serving_pod_ips();
                    let seen = handshakes.lock().unwrap();
                    let waiting = ips
                        .iter()
                        .filter(|ip| !seen.first_served.contains_key(&(ca.clone(), (*ip).clone())))
                        .count();
                    if waiting == 0 && ips.len() == 2 {
                        delivered = Some(began.elapsed());
                        Ok(())
                    } else {
                        Err(format!(
                            "{waiting} of {} replicas serve an older pair",
                            ips.len()
                        ))
                    }
                },
            );
            let mut retired = None;
            env.wait_for(
                &format!("the CA replaced by promotion {round} dropped"),
                Duration::from_secs(120),
                || {
                    let secret = env.tls_secret();
                    let bundles = env.ca_bundles();
                    if !secret.contains_key(PREVIOUS_CA_KEY)
                        && bundles.iter().all(|b| pem_blocks(b) == pem_blocks(&ca))
                    {
                        retired = Some(began.elapsed());
                        Ok(())
                    } else {
                        Err(format!(
                            "keys {:?}, caBundles of {:?} CAs",
                            secret.keys(),
                            bundles
                                .iter()
                                .map(|b| pem_blocks(b).len())
                                .collect::<Vec<_>>()
                        ))
                    }
                },
            );
            promotions.push(Promotion {
                ca,
                cert,
                at,
                delivered: delivered.unwrap(),
                retired: retired.unwrap(),
            });
        }
        stop.store(true, Ordering::Relaxed);
        promotions
    });
    let tally = load.stop();
    let handshakes = handshakes.into_inner().unwrap();
    for (round, p) in promotions.iter().enumerate() {
        let lags: Vec<String> = handshakes
            .first_served
            .iter()
            .filter(|((ca, _), _)| *ca == p.ca)
            .map(|(_, t)| format!("{:.1} s", t.saturating_sub(p.at).as_secs_f64()))
            .collect();
        eprintln!(
            "node tier: renewal, promotion {}: at +{:.1} s, every replica serving it at +{:.1} s \
             (kubelet delivery after the promotion: {}), the replaced CA dropped at +{:.1} s",
            round + 1,
            p.at.as_secs_f64(),
            p.delivered.as_secs_f64(),
            lags.join(", "),
            p.retired.as_secs_f64()
        );
    }
    eprintln!("node tier: renewal: {} handshakes", handshakes.count);
    assert_eq!(
        promotions[0].cert, staged.cert_pem,
        "the staged pair was not the one promoted"
    );
    assert!(
        promotions[1].ca != staged.ca_pem && promotions[1].ca != installed[CA_CERT_KEY],
        "the second promotion is not a pair the replicas issued"
    );
    assert!(
        handshakes.failures.is_empty(),
        "{} handshakes against an untrusted certificate:\n{}",
        handshakes.failures.len(),
        handshakes.failures.join("\n")
    );
    assert_clean("two promotions of short-lived certificates", &tally);

    // Back to the rendered arguments: install replaces the short-lived pair with a long one.
    // The replicas may be renewing while it runs; install then stops without undoing their
    // renewal and says to run it again, as a user would.
    for attempt in 1.. {
        let out = env.gmsa(&["install", "--apply", "--force-conflicts"]);
        if out.code == 0 {
            break;
        }
        assert!(
            attempt < 3 && out.stderr.contains("run install again"),
            "install after the renewals (attempt {attempt}):\n{}\n{}",
            out.stdout,
            out.stderr
        );
        eprintln!("node tier: install met a renewal under way and is run again");
    }
    env.rollout_status();
    env.wait_for(
        "a long-lived pair served after install",
        Duration::from_secs(120),
        || {
            let secret = env.tls_secret();
            let pair = Pair {
                ca_pem: secret[CA_CERT_KEY].clone(),
                cert_pem: secret[TLS_CERT_KEY].clone(),
                key_pem: secret[TLS_KEY_KEY].clone(),
            };
            let now = time::OffsetDateTime::now_utc();
            if let Some(reason) = pair.renewal_reason(&names, now, &Policy::default()) {
                return Err(reason);
            }
            match env.dry_run(&gmsa_pod("webapp")) {
                (201, body) if body.contains(MARKER) => Ok(()),
                (status, body) => Err(format!("HTTP {status}: {body}")),
            }
        },
    );
}
