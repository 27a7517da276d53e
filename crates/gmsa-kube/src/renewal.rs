//! Renewal of self-signed certificates by the replicas themselves (`--renew-certs-secret`).
//!
//! Every round a replica reads both webhook configurations, then the Secret, asks
//! [`SelfSignedSecret::plan`] for one step and writes it with the resourceVersion it read,
//! so of replicas deciding at once only one write lands; the others get 409 and read again
//! next round. Reading the configurations before the Secret matters: any CA a configuration
//! trusts was staged in the Secret before, so a write based on these two reads never drops a
//! CA that a newer Secret still needs.
//! What each round did goes to a [`RenewalReport`]: the process's metrics, which this crate
//! knows nothing of.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gmsa_tls::self_signed::{Policy, SelfSignedSecret, Step};
use gmsa_tls::CertStore;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::Client;
use rand::Rng as _;

/// What the replicas renew, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct RenewalSettings {
    pub namespace: String,
    pub secret: String,
    /// Name of both webhook configurations.
    pub configuration: String,
    pub policy: Policy,
    /// Time between rounds, jittered by up to a fifth either way.
    pub interval: Duration,
}

/// Where the renewal reports what each round did.
pub trait RenewalReport: Send + Sync {
    /// The round ended having taken `step`.
    fn stepped(&self, step: &Step);
    /// Another replica wrote first (409); the next round reads again.
    fn conflicted(&self);
    /// The round failed otherwise; the next round tries again.
    fn failed(&self);
}

/// Why a round could not finish; logged, and the next round tries again.
#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    #[error("cannot read {what}: {source}{}", hint(source))]
    Read { what: String, source: kube::Error },
    #[error("cannot write {what}: {source}{}", hint(source))]
    Write { what: String, source: kube::Error },
    #[error("cannot issue certificates: {0}")]
    Issue(#[from] gmsa_tls::TlsError),
}

/// How long every caBundle must have trusted a staged CA, as this replica saw it, before it
/// promotes: the API server loads a changed webhook configuration within about a second.
const PROMOTE_SETTLE: Duration = Duration::from_secs(5);

/// One replica's renewal loop.
pub struct Renewal {
    client: Client,
    settings: RenewalSettings,
    store: Arc<CertStore>,
    report: Arc<dyn RenewalReport>,
    /// The staged CA this replica first saw trusted everywhere, and when.
    trusted_since: Mutex<Option<(String, Instant)>>,
}

impl Renewal {
    /// A renewal writing through `client` and comparing with what `store` serves; does not
    /// contact the API server until spawned.
    pub fn new(
        client: Client,
        settings: RenewalSettings,
        store: Arc<CertStore>,
        report: Arc<dyn RenewalReport>,
    ) -> Self {
        Self {
            client,
            settings,
            store,
            report,
            trusted_since: Mutex::new(None),
        }
    }

    /// Runs rounds forever; the first one within a few seconds of start.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            tracing::info!(
                secret = %format!("{}/{}", self.settings.namespace, self.settings.secret),
                configuration = %self.settings.configuration,
                "renewing self-signed certificates in the cluster"
            );
            let mut first = true;
            loop {
                let wait = self.jittered();
                let wait = if first {
                    wait.min(Duration::from_secs(5))
                } else {
                    wait
                };
                first = false;
                tokio::time::sleep(wait).await;
                match self.round().await {
                    Ok(step) => self.report.stepped(&step),
                    Err(RenewalError::Write { what, source }) if is_conflict(&source) => {
                        tracing::debug!(%what, "another replica wrote first; reading again next round");
                        self.report.conflicted();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "certificate renewal round failed");
                        self.report.failed();
                    }
                }
            }
        })
    }

    fn jittered(&self) -> Duration {
        let base = self.settings.interval.as_secs_f64();
        let factor = rand::rng().random_range(0.8..1.2);
        Duration::from_secs_f64(base * factor)
    }

    /// Reads, plans and writes one step; returns the step taken.
    pub async fn round(&self) -> Result<Step, RenewalError> {
        let name = &self.settings.configuration;
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        let read = |what: &str| {
            let what = what.to_string();
            move |source| RenewalError::Read { what, source }
        };
        let mut m = mutating
            .get_opt(name)
            .await
            .map_err(read("the mutating webhook configuration"))?;
        let mut v = validating
            .get_opt(name)
            .await
            .map_err(read("the validating webhook configuration"))?;
        let secret = secrets
            .get_opt(&self.settings.secret)
            .await
            .map_err(read("the certificate Secret"))?;
        let Some(mut secret) = secret else {
            let step = Step::Wait(format!(
                "Secret {}/{} not found: `kubectl gmsa install` creates it",
                self.settings.namespace, self.settings.secret
            ));
            log_step(&step);
            return Ok(step);
        };
        if m.is_none() && v.is_none() {
            let step = Step::Wait(format!(
                "no webhook configuration named {name}: `kubectl gmsa install` creates them"
            ));
            log_step(&step);
            return Ok(step);
        }
        let mut bundles = Vec::new();
        if let Some(m) = &m {
            for w in m.webhooks.iter().flatten() {
                bundles.push(text(w.client_config.ca_bundle.as_ref()));
            }
        }
        if let Some(v) = &v {
            for w in v.webhooks.iter().flatten() {
                bundles.push(text(w.client_config.ca_bundle.as_ref()));
            }
        }
        let data: BTreeMap<String, String> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), text(Some(v))))
            .collect();
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        let mut state = SelfSignedSecret::from_secret(&data, &annotations);
        let served = self.store.current().cert.first().map(|c| c.to_vec());
        let now = time::OffsetDateTime::now_utc();
        let mut step = state.plan(&bundles, served.as_deref(), now, &self.settings.policy);
        if step == Step::Promote {
            let staged_ca = state
                .staged
                .as_ref()
                .map(|p| p.ca_pem.clone())
                .unwrap_or_default();
            let mut since = self
                .trusted_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let first_seen = match &*since {
                Some((ca, at)) if *ca == staged_ca => *at,
                _ => {
                    *since = Some((staged_ca, Instant::now()));
                    Instant::now()
                }
            };
            if first_seen.elapsed() < PROMOTE_SETTLE {
                step = Step::Wait(
                    "every caBundle trusts the staged CA; giving the API server time to load them before serving it".into(),
                );
            }
        }
        match &step {
            Step::Nothing | Step::Wait(_) => {}
            Step::Trust { bundle } => {
                let bundle = ByteString(bundle.clone().into_bytes());
                if let Some(m) = m.as_mut() {
                    let configs = m
                        .webhooks
                        .iter_mut()
                        .flatten()
                        .map(|w| &mut w.client_config);
                    if trust(configs, &bundle) {
                        replace(&mutating, name, m).await?;
                    }
                }
                if let Some(v) = v.as_mut() {
                    let configs = v
                        .webhooks
                        .iter_mut()
                        .flatten()
                        .map(|w| &mut w.client_config);
                    if trust(configs, &bundle) {
                        replace(&validating, name, v).await?;
                    }
                }
            }
            Step::Stage { .. } | Step::Promote | Step::Retire => {
                match &step {
                    Step::Stage { .. } => state.stage(&self.settings.policy)?,
                    Step::Promote => state.promote(now, self.settings.policy.previous_ca_grace),
                    _ => state.retire(),
                }
                let data = secret.data.get_or_insert_with(BTreeMap::new);
                for key in gmsa_tls::self_signed::KEYS {
                    data.remove(key);
                }
                for (key, value) in state.data() {
                    data.insert(key, ByteString(value.into_bytes()));
                }
                let annotations = secret
                    .metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new);
                annotations.remove(gmsa_tls::self_signed::PREVIOUS_CA_UNTIL_ANNOTATION);
                annotations.extend(state.annotations());
                secrets
                    .replace(&self.settings.secret, &PostParams::default(), &secret)
                    .await
                    .map_err(|source| RenewalError::Write {
                        what: format!(
                            "Secret {}/{}",
                            self.settings.namespace, self.settings.secret
                        ),
                        source,
                    })?;
            }
        }
        log_step(&step);
        Ok(step)
    }
}

/// Puts `bundle` in every client config; whether any had another (so the object needs a
/// write).
fn trust<'a>(
    configs: impl Iterator<Item = &'a mut WebhookClientConfig>,
    bundle: &ByteString,
) -> bool {
    let mut changed = false;
    for config in configs {
        if config.ca_bundle.as_ref() != Some(bundle) {
            config.ca_bundle = Some(bundle.clone());
            changed = true;
        }
    }
    changed
}

/// Writes a webhook configuration back with its new caBundles.
async fn replace<K>(api: &Api<K>, name: &str, object: &K) -> Result<(), RenewalError>
where
    K: k8s_openapi::Resource
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    api.replace(name, &PostParams::default(), object)
        .await
        .map_err(|source| RenewalError::Write {
            what: format!("{} {name}", K::KIND),
            source,
        })?;
    Ok(())
}

fn log_step(step: &Step) {
    match step {
        Step::Nothing => tracing::debug!("certificates current"),
        Step::Wait(why) => tracing::info!(%why, "certificate renewal waits"),
        Step::Trust { .. } => {
            tracing::info!("webhook configurations now trust exactly the Secret's CAs")
        }
        Step::Stage { reason } => {
            tracing::info!(%reason, "staged a new CA and serving certificate in the Secret")
        }
        Step::Promote => tracing::info!(
            "the Secret now serves the staged certificate; the replaced CA stays trusted for the grace period"
        ),
        Step::Retire => tracing::info!("grace period over: the replaced CA is forgotten"),
    }
}

fn text(bytes: Option<&ByteString>) -> String {
    bytes
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

/// What to do about a refusal the operator can fix.
fn hint(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(status) if status.code == 403 => {
            ": the webhook's service account lacks get/update on it; `kubectl gmsa install` grants them (Role <name>-certificates, ClusterRole <name>)"
        }
        _ => "",
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}
