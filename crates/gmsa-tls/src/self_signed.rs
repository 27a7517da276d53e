//! Self-signed certificates that renew themselves: the layout of the Secret that holds them,
//! and the one decision both `kubectl gmsa install` and the webhook's replicas make from it.
//!
//! A renewal must never leave the API server distrusting a certificate some replica serves,
//! and replicas pick up a new Secret at different times (the kubelet syncs each volume on its
//! own clock). So a new CA is first *staged* (kept in the Secret beside the served pair),
//! then *trusted* (added to every `caBundle`), only then *promoted* to the served pair, with
//! the old CA kept as *previous* and still trusted for a grace period, and finally *retired*.
//! Each step is one write with a resourceVersion precondition, so replicas that decide at
//! the same time cannot both win, and a replica that dies between steps leaves a state the
//! next one continues from.

use std::collections::BTreeMap;
use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::{
    certificate_validity, issue_serving_cert, pem_certificates, verify_serving_chain,
    CertificateAuthority, TlsError, Validity, CA_LIFETIME, SERVING_CERT_LIFETIME,
};

/// Keys of the self-signed Secret: the served pair and the CA that signed it (the keys a
/// `kubernetes.io/tls` Secret and cert-manager use) ...
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
pub const CA_CERT_KEY: &str = "ca.crt";
/// ... the staged pair and its CA, waiting until every `caBundle` trusts that CA ...
pub const NEXT_CERT_KEY: &str = "next-tls.crt";
pub const NEXT_KEY_KEY: &str = "next-tls.key";
pub const NEXT_CA_KEY: &str = "next-ca.crt";
/// ... and the CAs replaced by the last promotion, trusted until the annotation's time.
pub const PREVIOUS_CA_KEY: &str = "previous-ca.crt";
/// Until when the previous CAs stay trusted (RFC 3339).
pub const PREVIOUS_CA_UNTIL_ANNOTATION: &str = "gmsa.windows.k8s.io/previous-ca-trusted-until";
/// Every key of the layout.
pub const KEYS: [&str; 7] = [
    TLS_CERT_KEY,
    TLS_KEY_KEY,
    CA_CERT_KEY,
    NEXT_CERT_KEY,
    NEXT_KEY_KEY,
    NEXT_CA_KEY,
    PREVIOUS_CA_KEY,
];
/// Common name of every CA made here.
pub const CA_NAME: &str = "gmsa-webhook CA";

/// When certificates are replaced and for how long the replaced CA stays trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A pair expiring sooner than this (or whose CA does) is replaced.
    pub renew_before: Duration,
    pub ca_lifetime: Duration,
    pub cert_lifetime: Duration,
    /// The kubelet refreshes Secret volumes within about a minute and the webhook reloads
    /// within seconds; the default leaves a wide margin.
    pub previous_ca_grace: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            renew_before: Duration::days(30),
            ca_lifetime: CA_LIFETIME,
            cert_lifetime: SERVING_CERT_LIFETIME,
            previous_ca_grace: Duration::minutes(15),
        }
    }
}

/// A serving certificate, its key and the CA that signed it, PEM.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Pair {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pair")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

impl Pair {
    /// A new CA and a serving certificate it signs for `names`; the CA's key is not kept.
    pub fn issue(names: &[String], policy: &Policy) -> Result<Self, TlsError> {
        let ca =
            CertificateAuthority::generate(CA_NAME, Validity::starting_now(policy.ca_lifetime))?;
        let issued = issue_serving_cert(&ca, names, Validity::starting_now(policy.cert_lifetime))?;
        Ok(Self {
            ca_pem: ca.cert_pem().to_string(),
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
        })
    }

    /// Why this pair must be replaced before `now + renew_before`, or `None` if it can stay.
    /// `names` are the names it must be valid for; empty means the names it has.
    pub fn renewal_reason(
        &self,
        names: &[String],
        now: OffsetDateTime,
        policy: &Policy,
    ) -> Option<String> {
        let chain = match pem_certificates(TLS_CERT_KEY, &self.cert_pem) {
            Ok(chain) => chain,
            Err(e) => return Some(e.to_string()),
        };
        let days = policy.renew_before.whole_days();
        let within = if days > 0 {
            format!("{days} days")
        } else {
            format!("{} s", policy.renew_before.whole_seconds())
        };
        let deadline = now + policy.renew_before;
        let own_names;
        let names = if names.is_empty() {
            own_names = certificate_validity(&chain[0])
                .map(|v| v.names)
                .unwrap_or_default();
            &own_names
        } else {
            names
        };
        if names.is_empty() {
            return Some("the certificate names no DNS name or IP address".into());
        }
        for name in names {
            if let Err(e) = verify_serving_chain(&self.ca_pem, &chain, name, deadline) {
                return Some(format!(
                    "the certificate will not do for {name} in {within}: {e}"
                ));
            }
        }
        let ca = match pem_certificates(CA_CERT_KEY, &self.ca_pem) {
            Ok(ca) => ca,
            Err(e) => return Some(e.to_string()),
        };
        match certificate_validity(&ca[0]) {
            Ok(v) if v.not_after > deadline => None,
            Ok(_) => Some(format!("the CA expires within {within}")),
            Err(e) => Some(e.to_string()),
        }
    }

    /// The names the serving certificate is issued for (empty when it cannot be read).
    pub fn names(&self) -> Vec<String> {
        pem_certificates(TLS_CERT_KEY, &self.cert_pem)
            .ok()
            .and_then(|chain| certificate_validity(&chain[0]).ok())
            .map(|v| v.names)
            .unwrap_or_default()
    }
}

/// CAs replaced by a promotion, trusted until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// One or more PEM blocks.
    pub ca_pem: String,
    pub until: OffsetDateTime,
}

/// What the self-signed Secret holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SelfSignedSecret {
    /// The pair the replicas serve.
    pub current: Option<Pair>,
    /// A pair waiting for every `caBundle` to trust its CA.
    pub staged: Option<Pair>,
    pub previous: Option<Previous>,
}

/// What one replica (or the installer) should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Everything is current.
    Nothing,
    /// Not now, and why (the webhook logs it).
    Wait(String),
    /// Write `bundle` (PEM) into every `caBundle` that differs.
    Trust { bundle: String },
    /// Issue a new pair and stage it, for this reason.
    Stage { reason: String },
    /// Serve the staged pair; keep the replaced CA trusted for the grace period.
    Promote,
    /// The grace period is over: forget the previous CAs.
    Retire,
}

impl SelfSignedSecret {
    /// Reads the Secret's data (decoded) and annotations. A pair counts only when all three
    /// of its keys are non-empty; previous CAs without a readable deadline count as expired.
    pub fn from_secret(
        data: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
    ) -> Self {
        let text = |key: &str| data.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
        let pair = |ca: &str, cert: &str, key: &str| match (text(ca), text(cert), text(key)) {
            (Some(ca), Some(cert), Some(key)) => Some(Pair {
                ca_pem: format!("{ca}\n"),
                cert_pem: format!("{cert}\n"),
                key_pem: format!("{key}\n"),
            }),
            _ => None,
        };
        let previous = text(PREVIOUS_CA_KEY).map(|ca| Previous {
            ca_pem: format!("{ca}\n"),
            until: annotations
                .get(PREVIOUS_CA_UNTIL_ANNOTATION)
                .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        });
        Self {
            current: pair(CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY),
            staged: pair(NEXT_CA_KEY, NEXT_CERT_KEY, NEXT_KEY_KEY),
            previous,
        }
    }

    /// The keys in use. An installer's server-side apply that leaves out a key the replicas
    /// wrote keeps their value (a field of another manager); that is safe: a staged pair left
    /// over is trusted and promoted as usual, and previous CAs are retired after their grace.
    /// (Empty values instead would not do: v1.20 stores them as null, so every apply differs.)
    pub fn data(&self) -> BTreeMap<String, String> {
        let mut data = BTreeMap::new();
        for (pair, [ca, cert, key]) in [
            (&self.current, [CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY]),
            (&self.staged, [NEXT_CA_KEY, NEXT_CERT_KEY, NEXT_KEY_KEY]),
        ] {
            if let Some(pair) = pair {
                data.insert(ca.to_string(), pair.ca_pem.clone());
                data.insert(cert.to_string(), pair.cert_pem.clone());
                data.insert(key.to_string(), pair.key_pem.clone());
            }
        }
        if let Some(previous) = &self.previous {
            data.insert(PREVIOUS_CA_KEY.to_string(), previous.ca_pem.clone());
        }
        data
    }

    /// The annotations the Secret carries: the previous CAs' deadline, if any.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(previous) = &self.previous {
            let until = previous
                .until
                .replace_nanosecond(0)
                .unwrap_or(previous.until);
            if let Ok(text) = until.format(&Rfc3339) {
                out.insert(PREVIOUS_CA_UNTIL_ANNOTATION.to_string(), text);
            }
        }
        out
    }

    /// The CAs every `caBundle` must hold at `now`: current, staged, and previous while in
    /// grace; unreadable and expired ones left out, no duplicates.
    pub fn trusted(&self, now: OffsetDateTime) -> Vec<String> {
        let mut blocks = Vec::new();
        let previous = self.previous.as_ref().filter(|p| p.until > now);
        for pem in [
            self.current.as_ref().map(|p| &p.ca_pem),
            self.staged.as_ref().map(|p| &p.ca_pem),
            previous.map(|p| &p.ca_pem),
        ]
        .into_iter()
        .flatten()
        {
            for block in valid_blocks(pem, now) {
                if !blocks.contains(&block) {
                    blocks.push(block);
                }
            }
        }
        blocks
    }

    /// The next step for a replica. `bundles` are the `caBundle`s of every webhook it keeps
    /// (PEM); `serving` is the leaf certificate this replica serves now (DER), so it never
    /// drops the CA of a certificate it still serves itself.
    pub fn plan(
        &self,
        bundles: &[String],
        serving: Option<&[u8]>,
        now: OffsetDateTime,
        policy: &Policy,
    ) -> Step {
        let trusted = self.trusted(now);
        if !trusted.is_empty() {
            let mut missing = false;
            let mut extra = Vec::new();
            for bundle in bundles {
                let have = pem_blocks(bundle);
                missing |= trusted.iter().any(|b| !have.contains(b));
                extra.extend(have.into_iter().filter(|b| !trusted.contains(b)));
            }
            let serves_current = match (serving, &self.current) {
                (Some(served), Some(current)) => same_leaf(served, &current.cert_pem),
                _ => true,
            };
            if !extra.is_empty() && !serves_current {
                // Keep what the bundles trust until this replica serves the current pair.
                if missing {
                    let mut keep = trusted;
                    for block in extra {
                        if !keep.contains(&block) {
                            keep.push(block);
                        }
                    }
                    return Step::Trust {
                        bundle: keep.concat(),
                    };
                }
                return Step::Wait(
                    "this replica still serves an earlier certificate than the Secret's".into(),
                );
            }
            if missing || !extra.is_empty() {
                return Step::Trust {
                    bundle: trusted.concat(),
                };
            }
        }
        if let Some(staged) = &self.staged {
            // A staged pair that would itself need renewing (expired while waiting, or not
            // readable) is replaced, never served.
            return match staged.renewal_reason(&[], now, policy) {
                None => Step::Promote,
                Some(reason) if self.current.is_some() => Step::Stage {
                    reason: format!("the staged pair cannot be served: {reason}"),
                },
                Some(reason) => Step::Wait(format!(
                    "the staged pair cannot be served ({reason}) and there is no current pair to renew: run `kubectl gmsa install --rotate-certs`"
                )),
            };
        }
        if self.current.is_some() && self.previous.as_ref().is_some_and(|p| p.until <= now) {
            return Step::Retire;
        }
        match &self.current {
            None => Step::Wait("the Secret holds no certificate: run `kubectl gmsa install`".into()),
            Some(current) => match current.renewal_reason(&[], now, policy) {
                Some(reason) if current.names().is_empty() => Step::Wait(format!(
                    "{reason}; its names cannot be read, so it cannot be renewed here: run `kubectl gmsa install --rotate-certs`"
                )),
                Some(reason) => Step::Stage { reason },
                None => Step::Nothing,
            },
        }
    }

    /// Stages a new pair for the current pair's names (or a staged pair's, replacing it).
    pub fn stage(&mut self, policy: &Policy) -> Result<(), TlsError> {
        let names = [&self.current, &self.staged]
            .into_iter()
            .flatten()
            .map(Pair::names)
            .find(|names| !names.is_empty())
            .unwrap_or_default();
        self.staged = Some(Pair::issue(&names, policy)?);
        Ok(())
    }

    /// Serves the staged pair; the replaced CA (and previous ones still in grace) stay
    /// trusted until `now + grace`.
    pub fn promote(&mut self, now: OffsetDateTime, grace: Duration) {
        let Some(staged) = self.staged.take() else {
            return;
        };
        self.replace_current(staged, now, grace);
    }

    /// Forgets the previous CAs.
    pub fn retire(&mut self) {
        self.previous = None;
    }

    fn replace_current(&mut self, new: Pair, now: OffsetDateTime, grace: Duration) {
        let mut kept: Vec<String> = Vec::new();
        let old_previous = self.previous.take().filter(|p| p.until > now);
        for pem in [
            self.current.as_ref().map(|p| &p.ca_pem),
            old_previous.as_ref().map(|p| &p.ca_pem),
        ]
        .into_iter()
        .flatten()
        {
            for block in valid_blocks(pem, now) {
                if !kept.contains(&block) && !pem_blocks(&new.ca_pem).contains(&block) {
                    kept.push(block);
                }
            }
        }
        if !kept.is_empty() {
            self.previous = Some(Previous {
                ca_pem: kept.concat(),
                until: now + grace,
            });
        }
        self.current = Some(new);
    }

    /// The installer's decision: keep the Secret as it is (`None`) while its pair is good
    /// for `names` beyond `renew_before`, else (or when `rotate`) serve a new pair at once,
    /// keeping the replaced CAs trusted; a staged pair is dropped, since nothing serves it.
    /// The installer writes the Secret and the bundles together, so no staging is needed.
    pub fn install(
        &mut self,
        names: &[String],
        rotate: bool,
        now: OffsetDateTime,
        policy: &Policy,
    ) -> Result<Option<String>, TlsError> {
        let reason = match (&self.current, rotate) {
            (_, true) => Some("--rotate-certs".to_string()),
            (None, false) => Some("no certificate yet".to_string()),
            (Some(current), false) => current.renewal_reason(names, now, policy),
        };
        let Some(reason) = reason else {
            if self.previous.as_ref().is_some_and(|p| p.until <= now) {
                self.previous = None;
            }
            return Ok(None);
        };
        let new = Pair::issue(names, policy)?;
        self.staged = None;
        self.replace_current(new, now, policy.previous_ca_grace);
        Ok(Some(reason))
    }
}

/// The `-----BEGIN CERTIFICATE-----` blocks of a PEM text, normalised.
pub fn pem_blocks(pem: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        if line == "-----BEGIN CERTIFICATE-----" {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
        if line == "-----END CERTIFICATE-----" {
            if let Some(block) = current.take() {
                blocks.push(block);
            }
        }
    }
    blocks
}

/// Blocks of `pem` that are readable certificates valid at `now`.
fn valid_blocks(pem: &str, now: OffsetDateTime) -> Vec<String> {
    pem_blocks(pem)
        .into_iter()
        .filter(|block| {
            pem_certificates("caBundle", block)
                .ok()
                .and_then(|c| certificate_validity(&c[0]).ok())
                .is_some_and(|v| v.not_after > now)
        })
        .collect()
}

fn same_leaf(served_der: &[u8], cert_pem: &str) -> bool {
    pem_certificates(TLS_CERT_KEY, cert_pem).is_ok_and(|chain| chain[0].as_ref() == served_der)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        pem_certificates("test", pem).unwrap()[0].to_vec()
    }

    fn names() -> Vec<String> {
        vec!["gmsa-webhook.gmsa-system.svc".into()]
    }

    fn installed(now: OffsetDateTime, policy: &Policy) -> SelfSignedSecret {
        let mut secret = SelfSignedSecret::default();
        let reason = secret.install(&names(), false, now, policy).unwrap();
        assert_eq!(reason.as_deref(), Some("no certificate yet"));
        secret
    }

    fn short() -> Policy {
        Policy {
            renew_before: Duration::seconds(60),
            ca_lifetime: Duration::seconds(120),
            cert_lifetime: Duration::seconds(90),
            previous_ca_grace: Duration::seconds(20),
        }
    }

    /// The Secret survives a round trip through its data, and empty keys mean absent.
    #[test]
    fn the_secret_layout_round_trips() {
        let now = OffsetDateTime::now_utc();
        let policy = Policy::default();
        let mut secret = installed(now, &policy);
        assert_eq!(
            SelfSignedSecret::from_secret(&secret.data(), &secret.annotations()),
            secret
        );
        assert_eq!(secret.data().len(), 3);
        secret.stage(&policy).unwrap();
        secret.promote(now, policy.previous_ca_grace);
        let read = SelfSignedSecret::from_secret(&secret.data(), &secret.annotations());
        assert_eq!(read.current, secret.current);
        let previous = read.previous.unwrap();
        assert_eq!(
            previous.until,
            secret
                .previous
                .as_ref()
                .unwrap()
                .until
                .replace_nanosecond(0)
                .unwrap()
        );
        // A previous CA without a readable deadline is not trusted.
        let read = SelfSignedSecret::from_secret(&secret.data(), &BTreeMap::new());
        assert_eq!(read.trusted(now).len(), 1);
    }

    /// One renewal from start to end, as replicas see it: each step's write is what the next
    /// plan reads, and at every point the bundles trust whatever any replica may serve.
    #[test]
    fn a_renewal_stages_trusts_promotes_and_retires() {
        // The installed pair lasts 90 s; renewals last longer, since they are issued at the
        // real time, not at the simulated one.
        let start = OffsetDateTime::now_utc();
        let mut secret = installed(start, &short());
        let policy = Policy {
            ca_lifetime: Duration::seconds(2000),
            cert_lifetime: Duration::seconds(1000),
            ..short()
        };
        let first = secret.current.clone().unwrap();
        let mut bundles = vec![secret.trusted(start).concat(); 2];
        assert_eq!(
            secret.plan(&bundles, Some(&der(&first.cert_pem)), start, &policy),
            Step::Nothing
        );

        // 40 s later the 90 s certificate has under 60 s left.
        let t = start + Duration::seconds(40);
        let Step::Stage { reason } = secret.plan(&bundles, Some(&der(&first.cert_pem)), t, &policy)
        else {
            panic!("expected a stage");
        };
        assert!(reason.contains("60 s"), "{reason}");
        secret.stage(&policy).unwrap();
        let next = secret.staged.clone().unwrap();
        assert_eq!(next.names(), names(), "a renewal keeps the names");
        let Step::Trust { bundle } = secret.plan(&bundles, Some(&der(&first.cert_pem)), t, &policy)
        else {
            panic!("expected trust");
        };
        assert_eq!(
            pem_blocks(&bundle),
            [first.ca_pem.clone(), next.ca_pem.clone()]
        );
        // One bundle written, the other not yet: still trust, never promote.
        bundles[0] = bundle.clone();
        assert!(matches!(
            secret.plan(&bundles, Some(&der(&first.cert_pem)), t, &policy),
            Step::Trust { .. }
        ));
        bundles[1] = bundle;
        assert_eq!(
            secret.plan(&bundles, Some(&der(&first.cert_pem)), t, &policy),
            Step::Promote
        );
        secret.promote(t, policy.previous_ca_grace);
        assert_eq!(secret.current.as_ref(), Some(&next));
        // The bundles already hold both CAs: nothing to write while in grace, whatever is served.
        assert_eq!(
            secret.plan(&bundles, Some(&der(&first.cert_pem)), t, &policy),
            Step::Nothing
        );
        assert_eq!(
            secret.plan(&bundles, Some(&der(&next.cert_pem)), t, &policy),
            Step::Nothing
        );

        // After the grace period the old CA goes, but not by a replica still serving the old pair.
        let later = t + policy.previous_ca_grace + Duration::seconds(1);
        assert!(matches!(
            secret.plan(&bundles, Some(&der(&first.cert_pem)), later, &policy),
            Step::Wait(_)
        ));
        let Step::Trust { bundle } =
            secret.plan(&bundles, Some(&der(&next.cert_pem)), later, &policy)
        else {
            panic!("expected trust");
        };
        assert_eq!(pem_blocks(&bundle), std::slice::from_ref(&next.ca_pem));
        bundles = vec![bundle; 2];
        assert_eq!(
            secret.plan(&bundles, Some(&der(&next.cert_pem)), later, &policy),
            Step::Retire
        );
        secret.retire();
        assert_eq!(
            secret.plan(&bundles, Some(&der(&next.cert_pem)), later, &policy),
            Step::Nothing
        );
        assert!(!secret.data().contains_key(PREVIOUS_CA_KEY));
    }

    /// A bundle that lost a CA (someone re-applied an old manifest) is repaired first, and
    /// a replica that serves an old pair still adds what is missing without dropping its CA.
    #[test]
    fn missing_trust_is_restored_before_anything_else() {
        let policy = Policy::default();
        let now = OffsetDateTime::now_utc();
        let secret = installed(now, &policy);
        let current = secret.current.clone().unwrap();
        let stranger = installed(now, &policy).current.unwrap();
        let bundles = vec![stranger.ca_pem.clone()];
        assert_eq!(
            secret.plan(&bundles, Some(&der(&current.cert_pem)), now, &policy),
            Step::Trust {
                bundle: current.ca_pem.clone()
            }
        );
        let Step::Trust { bundle } =
            secret.plan(&bundles, Some(&der(&stranger.cert_pem)), now, &policy)
        else {
            panic!("expected trust");
        };
        assert_eq!(
            pem_blocks(&bundle),
            [current.ca_pem.clone(), stranger.ca_pem.clone()]
        );
        // No certificate at all: nothing is trusted, so nothing is written.
        assert!(matches!(
            SelfSignedSecret::default().plan(&bundles, None, now, &policy),
            Step::Wait(_)
        ));
    }

    /// A staged pair that expired while waiting (or is garbage) is replaced, not promoted.
    #[test]
    fn a_staged_pair_that_cannot_be_served_is_replaced() {
        let now = OffsetDateTime::now_utc();
        let mut secret = installed(now, &Policy::default());
        secret.staged = Some(Pair::issue(&names(), &short()).unwrap());
        // Trusted everywhere, but it expires within the 30 days renewals keep.
        let bundles = vec![secret.trusted(now).concat()];
        let Step::Stage { reason } = secret.plan(&bundles, None, now, &Policy::default()) else {
            panic!("expected a new stage");
        };
        assert!(
            reason.starts_with("the staged pair cannot be served"),
            "{reason}"
        );
        let later = now + Duration::seconds(100);
        secret.staged.as_mut().unwrap().cert_pem = "garbage".into();
        assert!(matches!(
            secret.plan(&bundles, None, now, &Policy::default()),
            Step::Stage { .. }
        ));
        secret.stage(&Policy::default()).unwrap();
        assert_eq!(secret.staged.as_ref().unwrap().names(), names());
        // Nothing current: a previous CA is never retired into a Secret without a pair.
        let orphan = SelfSignedSecret {
            current: None,
            staged: None,
            previous: Some(Previous {
                ca_pem: secret.current.clone().unwrap().ca_pem,
                until: now,
            }),
        };
        assert!(matches!(
            orphan.plan(&[], None, later, &Policy::default()),
            Step::Wait(_)
        ));
    }

    #[test]
    fn install_keeps_good_pairs_and_replaces_the_rest_keeping_old_cas_trusted() {
        let policy = Policy::default();
        let now = OffsetDateTime::now_utc();
        let mut secret = installed(now, &policy);
        let before = secret.clone();
        assert_eq!(secret.install(&names(), false, now, &policy).unwrap(), None);
        assert_eq!(secret, before);
        // Other names, a near expiry, or --rotate-certs: a new pair, the old CA kept.
        let other = vec!["other.gmsa-system.svc".to_string()];
        assert!(secret
            .install(&other, false, now, &policy)
            .unwrap()
            .unwrap()
            .contains("other"));
        let reason = secret
            .clone()
            .install(&other, false, now + Duration::days(340), &policy)
            .unwrap();
        assert!(reason.unwrap().contains("30 days"));
        assert!(secret
            .install(&other, true, now, &policy)
            .unwrap()
            .is_some());
        secret.stage(&policy).unwrap();
        assert_eq!(
            secret
                .install(&other, true, now, &policy)
                .unwrap()
                .as_deref(),
            Some("--rotate-certs")
        );
        assert!(
            secret.staged.is_none(),
            "a staged pair nothing serves is dropped"
        );
        // Three rotations within the grace: every replaced CA still trusted.
        assert_eq!(secret.trusted(now).len(), 4);
        assert_eq!(
            pem_blocks(&secret.previous.as_ref().unwrap().ca_pem)[2],
            before.current.unwrap().ca_pem
        );
        let after = now + policy.previous_ca_grace + Duration::minutes(1);
        assert_eq!(secret.install(&other, false, after, &policy).unwrap(), None);
        assert!(secret.previous.is_none());
        assert_eq!(secret.trusted(after).len(), 1);
    }
}
