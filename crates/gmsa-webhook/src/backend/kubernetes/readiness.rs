//! Which of the backend's sources have synced, and whether they still follow the cluster.
//! Ready means every required source has synced once and none has been failing to resync
//! for longer than the stale limit (`--watch-stale-after`): a brief watch failure keeps
//! readiness (the cache serves what it had, the watcher recovers by itself), a long one takes
//! it away, so the Service stops sending this replica reviews it would answer from a cache
//! that no longer follows deletions and revocations.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use gmsa_kube::watch::Health;

/// Something readiness waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    CredentialSpecs,
    Roles,
    ClusterRoles,
    RoleBindings,
    ClusterRoleBindings,
    /// With the caches off: the API server answered once.
    ApiReachable,
}

impl Source {
    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn index(self) -> usize {
        self as usize
    }

    const ALL: usize = 6;

    /// The four RBAC watches whose events flush the decision cache.
    pub(crate) const RBAC: [Source; 4] = [
        Source::Roles,
        Source::ClusterRoles,
        Source::RoleBindings,
        Source::ClusterRoleBindings,
    ];

    fn mask(sources: &[Source]) -> u8 {
        sources.iter().fold(0, |m, s| m | s.bit())
    }
}

/// Lock-free sync flags and failure clocks, read on every `/readyz`.
pub(crate) struct Readiness {
    required: u8,
    synced: AtomicU8,
    stale_after: Duration,
    /// Per source: when its current run of watch failures began, in milliseconds after
    /// `epoch` plus one; zero while it is healthy.
    failing_since: [AtomicU64; Source::ALL],
    /// Per source, the same clock: its last failure, and the last list or watch request the
    /// API server accepted.
    last_failure: [AtomicU64; Source::ALL],
    accepted: [AtomicU64; Source::ALL],
    epoch: Instant,
    /// Logged at info once every source has synced: what is now ready.
    ready_message: &'static str,
}

/// An accepted request counts as recovery only once no failure has followed it for this
/// long: errors inside a 200 stream (a watch `ERROR` event, an undecodable body) come after
/// the request was accepted, and must not reset the failure clock on every retry.
const ACCEPTED_GRACE_MS: u64 = 5_000;

impl Readiness {
    /// Ready once every one of `sources` has synced, and while none of them has been failing
    /// for longer than `stale_after`.
    pub(crate) fn new(sources: &[Source], stale_after: Duration) -> Self {
        Self {
            required: Source::mask(sources),
            synced: AtomicU8::new(0),
            stale_after,
            failing_since: Default::default(),
            last_failure: Default::default(),
            accepted: Default::default(),
            epoch: Instant::now(),
            ready_message: "Kubernetes backend ready: caches synced",
        }
    }

    /// The same, logging `message` once every source has synced (the keeper says what it
    /// does, not that an admission backend is ready).
    pub(crate) fn announcing(self, message: &'static str) -> Self {
        Self {
            ready_message: message,
            ..self
        }
    }

    fn now_mark(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// Records a failed list or watch of `source`; starts its failure clock unless running.
    pub(crate) fn failed(&self, source: Source) {
        let now = self.now_mark();
        self.last_failure[source.index()].store(now, Ordering::Release);
        let _ = self.failing_since[source.index()].compare_exchange(
            0,
            now,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Records that a list or watch request of `source` was accepted (2xx): recovery, unless
    /// a failure follows within [`ACCEPTED_GRACE_MS`].
    pub(crate) fn accepted(&self, source: Source) {
        self.accepted[source.index()].store(self.now_mark(), Ordering::Release);
    }

    /// Records that `source` follows the cluster again: the watcher delivered an event.
    pub(crate) fn recovered(&self, source: Source) {
        if self.failing_since[source.index()].swap(0, Ordering::AcqRel) != 0 {
            tracing::info!(?source, "watch recovered");
        }
    }

    /// Records what one change of `source`'s watch says of it ([`Change::health`]): a
    /// failure, that it follows the cluster again, or (a list just announced) nothing yet.
    ///
    /// [`Change::health`]: gmsa_kube::watch::Change::health
    pub(crate) fn watched(&self, source: Source, health: Health) {
        match health {
            Health::Failing => self.failed(source),
            Health::Following => self.recovered(source),
            Health::Unknown => {}
        }
    }

    /// The sources failing for longer than the stale limit.
    pub(crate) fn stale(&self) -> Vec<Source> {
        let now = self.now_mark();
        let limit = u64::try_from(self.stale_after.as_millis()).unwrap_or(u64::MAX);
        [
            Source::CredentialSpecs,
            Source::Roles,
            Source::ClusterRoles,
            Source::RoleBindings,
            Source::ClusterRoleBindings,
            Source::ApiReachable,
        ]
        .into_iter()
        .filter(|s| self.required & s.bit() != 0)
        .filter(|s| {
            let i = s.index();
            let since = self.failing_since[i].load(Ordering::Acquire);
            if since == 0 {
                return false;
            }
            let accepted = self.accepted[i].load(Ordering::Acquire);
            let last_failure = self.last_failure[i].load(Ordering::Acquire);
            if accepted > last_failure && now.saturating_sub(accepted) >= ACCEPTED_GRACE_MS {
                // A request accepted, and quiet since: the watch is back.
                self.recovered(*s);
                return false;
            }
            now.saturating_sub(since) > limit
        })
        .collect()
    }

    /// Records that `source` has synced (its first complete list, or the first answer).
    pub(crate) fn mark(&self, source: Source) {
        let before = self.synced.fetch_or(source.bit(), Ordering::AcqRel);
        let after = before | source.bit();
        if before & source.bit() == 0 {
            tracing::debug!(?source, "synced");
            if after & self.required == self.required && before & self.required != self.required {
                tracing::info!("{}", self.ready_message);
            }
        }
    }

    /// Whether every required source has synced and none is stale.
    pub(crate) fn is_ready(&self) -> bool {
        self.synced.load(Ordering::Acquire) & self.required == self.required
            && self.stale().is_empty()
    }

    /// Whether all of `sources` have synced.
    pub(crate) fn all_synced(&self, sources: &[Source]) -> bool {
        let mask = Source::mask(sources);
        self.synced.load(Ordering::Acquire) & mask == mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_when_every_required_source_synced() {
        let r = Readiness::new(
            &[Source::CredentialSpecs, Source::Roles],
            Duration::from_secs(60),
        );
        assert!(!r.is_ready());
        r.mark(Source::Roles);
        r.mark(Source::ApiReachable);
        assert!(!r.is_ready());
        r.mark(Source::CredentialSpecs);
        assert!(r.is_ready());
        assert!(!r.all_synced(&Source::RBAC));
        for s in Source::RBAC {
            r.mark(s);
        }
        assert!(r.all_synced(&Source::RBAC));
    }

    #[test]
    fn a_source_failing_longer_than_the_limit_takes_readiness_until_it_recovers() {
        let r = Readiness::new(&[Source::CredentialSpecs], Duration::from_millis(30));
        r.mark(Source::CredentialSpecs);
        r.failed(Source::CredentialSpecs);
        assert!(r.is_ready(), "a brief failure keeps readiness");
        std::thread::sleep(Duration::from_millis(60));
        r.failed(Source::CredentialSpecs);
        assert_eq!(r.stale(), vec![Source::CredentialSpecs]);
        assert!(!r.is_ready());
        // An accepted request followed by a failure (an error inside a 200 stream) is no
        // recovery; a quiet one is, once the grace has passed (not waited for here).
        r.accepted(Source::CredentialSpecs);
        r.failed(Source::CredentialSpecs);
        assert!(!r.is_ready(), "an accepted request that failed again");
        // Failures of a source readiness does not wait for do not count.
        r.recovered(Source::CredentialSpecs);
        r.failed(Source::Roles);
        std::thread::sleep(Duration::from_millis(60));
        assert!(r.is_ready());
    }

    /// A re-list that keeps failing: kube announces each attempt before it fails. The
    /// announcements are no answer, so the failure clock runs on and the replica turns stale.
    #[test]
    fn a_list_that_keeps_failing_turns_stale() {
        use gmsa_kube::watch::Change;
        let r = Readiness::new(&[Source::CredentialSpecs], Duration::from_millis(30));
        r.mark(Source::CredentialSpecs);
        let failed = || Change::<()>::Failed(kube::runtime::watcher::Error::NoResourceVersion);
        for _ in 0..4 {
            r.watched(Source::CredentialSpecs, Change::<()>::Listing.health());
            r.watched(Source::CredentialSpecs, failed().health());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(r.stale(), vec![Source::CredentialSpecs]);
        r.watched(
            Source::CredentialSpecs,
            Change::<()>::Listed(Vec::new()).health(),
        );
        assert!(r.is_ready(), "a completed list is an answer");
    }
}
