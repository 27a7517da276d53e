//! Which of the backend's sources have synced. Ready means every required source has synced
//! once; a later watch failure does not take readiness back (the cache keeps serving what it
//! had, and the watcher recovers by itself), it is logged instead.

use std::sync::atomic::{AtomicU8, Ordering};

/// Something readiness waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
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

    /// The four RBAC watches whose events flush the decision cache.
    pub(super) const RBAC: [Source; 4] = [
        Source::Roles,
        Source::ClusterRoles,
        Source::RoleBindings,
        Source::ClusterRoleBindings,
    ];

    fn mask(sources: &[Source]) -> u8 {
        sources.iter().fold(0, |m, s| m | s.bit())
    }
}

/// Lock-free sync flags, read on every `/readyz`.
pub(super) struct Readiness {
    required: u8,
    synced: AtomicU8,
}

impl Readiness {
    /// Ready once every one of `sources` has synced.
    pub(super) fn new(sources: &[Source]) -> Self {
        Self {
            required: Source::mask(sources),
            synced: AtomicU8::new(0),
        }
    }

    /// Records that `source` has synced (its first complete list, or the first answer).
    pub(super) fn mark(&self, source: Source) {
        let before = self.synced.fetch_or(source.bit(), Ordering::AcqRel);
        let after = before | source.bit();
        if before & source.bit() == 0 {
            tracing::debug!(?source, "synced");
            if after & self.required == self.required && before & self.required != self.required {
                tracing::info!("Kubernetes backend ready: caches synced");
            }
        }
    }

    /// Whether every required source has synced.
    pub(super) fn is_ready(&self) -> bool {
        self.synced.load(Ordering::Acquire) & self.required == self.required
    }

    /// Whether all of `sources` have synced.
    pub(super) fn all_synced(&self, sources: &[Source]) -> bool {
        let mask = Source::mask(sources);
        self.synced.load(Ordering::Acquire) & mask == mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_when_every_required_source_synced() {
        let r = Readiness::new(&[Source::CredentialSpecs, Source::Roles]);
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
}
