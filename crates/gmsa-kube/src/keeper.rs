//! The contents keeper (`--keep-published-contents`): follows every GMSACredentialSpec and
//! writes (through [`crate::published`]) the annotations [`gmsa_core::published`] decides,
//! for policy mode, where admission policies read the encoded contents because CEL cannot
//! encode JSON.
//!
//! Each write is a JSON merge patch carrying the resourceVersion of the object it was decided
//! from. A 409 means the object changed since: the watch brings the newer version and the
//! decision is made again from it, so contents computed from an older object never land, and
//! replicas running at once cost each other only such conflicts. Other failures are retried
//! from a fresh read, with backoff.
//!
//! A list's objects are kept once the list is complete (the watch driver hands it over whole),
//! not one by one while it arrives.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;
use kube::Client;
use tokio::time::Instant;

use crate::client::describe_error;
use crate::published::{ContentsWriter, OnConflict, Outcome, PublishError, Published};
use crate::resources::credential_spec_resource;
use crate::watch::{self, Change, Health};

/// The field manager of the keeper's writes.
pub const FIELD_MANAGER: &str = "gmsa-webhook";

/// What a 403 asks the operator to grant.
pub const RBAC_NEEDED: &str = "get, list, watch and patch on gmsacredentialspecs.windows.k8s.io \
    (ClusterRole rule: apiGroups [windows.k8s.io], resources [gmsacredentialspecs], \
    verbs [get, list, watch, patch])";

/// Bound on one read or write; a write that timed out is retried, the resourceVersion making
/// a retry of one that did land fail harmlessly.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What one write of the annotations came to, as the process counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteOutcome {
    /// The contents and their generation were set.
    Published,
    /// Both annotations were removed: the spec has no contents.
    Withdrawn,
    /// The spec changed since it was read (409); the watch brings the newer one.
    Conflict,
    /// 403: the identity lacks `patch` on gmsacredentialspecs.
    Forbidden,
    /// Any other failure; retried with backoff.
    Failed,
}

/// Where the keeper reports how its watch fares and what its writes did: the process's
/// readiness and metrics, which this crate knows nothing of.
pub trait KeeperReport: Send + Sync {
    /// What one change says of the watch ([`Change::health`]); after a failure it retries
    /// with backoff.
    fn watched(&self, health: Health);
    /// The watch has listed every spec once.
    fn listed(&self);
    /// One write ended with `outcome`.
    fn written(&self, outcome: WriteOutcome);
}

/// Follows the credential specs through one client and keeps their published contents.
pub struct Keeper {
    api: Api<DynamicObject>,
    contents: ContentsWriter,
    report: Arc<dyn KeeperReport>,
}

/// Whether a spec needs another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    Done,
    Retry,
}

impl Keeper {
    /// A keeper reading and writing through `client`; does not contact the API server.
    pub fn new(client: Client, report: Arc<dyn KeeperReport>) -> Self {
        let api = Api::all_with(client, &credential_spec_resource());
        Self {
            contents: ContentsWriter::new(api.clone(), FIELD_MANAGER, OnConflict::FollowWatch),
            api,
            report,
        }
    }

    /// Keeps the annotations until the task is aborted.
    pub async fn run(&self) {
        let mut changes = pin!(watch::changes(self.api.clone()));
        let mut retries = Retries::default();
        loop {
            let due = retries.next_due();
            let wait = async move {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                change = changes.next() => match change {
                    Some(change) => self.on_change(change, &mut retries).await,
                    None => break,
                },
                () = wait => {
                    for (name, attempts) in retries.take_due(Instant::now()) {
                        if self.reread(&name).await == Kept::Retry {
                            retries.schedule(name, attempts + 1);
                        }
                    }
                }
            }
        }
        tracing::error!("credential-spec watch ended; published contents are no longer kept");
    }

    async fn on_change(&self, change: Change<DynamicObject>, retries: &mut Retries) {
        self.report.watched(change.health());
        match change {
            Change::Listing => {}
            Change::Listed(objects) => {
                for object in objects {
                    self.on_applied(object, retries).await;
                }
                self.report.listed();
                tracing::debug!("credential specs listed");
            }
            Change::Applied(object) => self.on_applied(object, retries).await,
            Change::Deleted(object) => {
                retries.forget(object.metadata.name.as_deref().unwrap_or_default());
            }
            Change::Failed(e) if watch_forbidden(&e) => {
                tracing::error!(error = %e, "cannot list or watch GMSACredentialSpecs: grant {RBAC_NEEDED}");
            }
            Change::Failed(e) => {
                tracing::warn!(error = %e, "credential-spec watch failed; retrying with backoff");
            }
        }
    }

    async fn on_applied(&self, object: DynamicObject, retries: &mut Retries) {
        let name = object.metadata.name.clone().unwrap_or_default();
        // A newer version supersedes any retry of an older one.
        retries.forget(&name);
        if self.keep(object).await == Kept::Retry {
            retries.schedule(name, 0);
        }
    }

    /// Reads the spec again after a failed write, and decides from what is stored now.
    async fn reread(&self, name: &str) -> Kept {
        match tokio::time::timeout(CALL_TIMEOUT, self.api.get_opt(name)).await {
            Ok(Ok(Some(object))) => self.keep(object).await,
            Ok(Ok(None)) => Kept::Done,
            Ok(Err(e)) => {
                tracing::warn!(name, error = %describe_error(&e), "cannot read GMSACredentialSpec; retrying");
                Kept::Retry
            }
            Err(_) => Kept::Retry,
        }
    }

    /// Writes what `object`'s annotations need, guarded by its resourceVersion.
    async fn keep(&self, object: DynamicObject) -> Kept {
        let name = object.metadata.name.clone().unwrap_or_default();
        let resource_version = object.metadata.resource_version.clone().unwrap_or_default();
        let result = match tokio::time::timeout(CALL_TIMEOUT, self.contents.publish(object)).await {
            Ok(result) => result,
            Err(_) => {
                self.report.written(WriteOutcome::Failed);
                tracing::warn!(name, "no answer to the published contents' write; retrying");
                return Kept::Retry;
            }
        };
        match result {
            Ok(Published {
                outcome: Outcome::Current,
                ..
            }) => Kept::Done,
            Ok(Published {
                outcome,
                generation,
            }) => {
                let (outcome, text) = match outcome {
                    Outcome::Withdrawn => (
                        WriteOutcome::Withdrawn,
                        "published contents removed: the spec has no credspec",
                    ),
                    _ => (WriteOutcome::Published, "published contents"),
                };
                self.report.written(outcome);
                tracing::info!(name, generation, "{text}");
                Kept::Done
            }
            Err(PublishError::NoResourceVersion) => {
                tracing::warn!(
                    name,
                    "GMSACredentialSpec without a resourceVersion; not published"
                );
                Kept::Done
            }
            Err(PublishError::Unreadable(e)) => {
                tracing::warn!(name, error = %e, "cannot read GMSACredentialSpec");
                Kept::Done
            }
            Err(PublishError::Undecidable(e)) => {
                tracing::warn!(name, error = %e, "cannot publish this GMSACredentialSpec's contents");
                Kept::Done
            }
            Err(PublishError::Superseded) => {
                self.report.written(WriteOutcome::Conflict);
                tracing::debug!(
                    name,
                    resource_version,
                    "changed since read; the watch brings the newer version"
                );
                Kept::Done
            }
            Err(PublishError::Write(kube::Error::Api(status))) if status.code == 404 => Kept::Done,
            Err(PublishError::Write(kube::Error::Api(status))) if status.code == 403 => {
                self.report.written(WriteOutcome::Forbidden);
                tracing::error!(name, error = %status.message, "cannot publish contents: grant {RBAC_NEEDED}");
                Kept::Retry
            }
            Err(PublishError::Write(e)) => {
                self.report.written(WriteOutcome::Failed);
                tracing::warn!(name, error = %describe_error(&e), "cannot publish contents; retrying");
                Kept::Retry
            }
            // Only a writer that re-reads on conflicts fails these ways; the keeper's follows
            // the watch instead.
            Err(e @ (PublishError::Reread(_) | PublishError::KeptChanging(_))) => {
                self.report.written(WriteOutcome::Failed);
                tracing::warn!(name, error = %e, "cannot publish contents; retrying");
                Kept::Retry
            }
        }
    }
}

fn watch_forbidden(error: &watcher::Error) -> bool {
    matches!(
        error,
        watcher::Error::InitialListFailed(kube::Error::Api(status))
            | watcher::Error::WatchStartFailed(kube::Error::Api(status))
            | watcher::Error::WatchFailed(kube::Error::Api(status))
            if status.code == 403
    ) || matches!(error, watcher::Error::WatchError(status) if status.code == 403)
}

/// Specs whose write failed, with when to read them again and how often that has failed.
#[derive(Debug, Default)]
struct Retries {
    due: HashMap<String, (Instant, u32)>,
}

impl Retries {
    /// Retries `name` after a backoff that doubles with each failed attempt.
    fn schedule(&mut self, name: String, attempts: u32) {
        let delay = RETRY_FIRST
            .saturating_mul(2u32.saturating_pow(attempts.min(16)))
            .min(RETRY_MAX);
        self.due.insert(name, (Instant::now() + delay, attempts));
    }

    fn forget(&mut self, name: &str) {
        self.due.remove(name);
    }

    fn next_due(&self) -> Option<Instant> {
        self.due.values().map(|(at, _)| *at).min()
    }

    /// Removes and returns the specs due by `now`, with their failed attempts so far.
    fn take_due(&mut self, now: Instant) -> Vec<(String, u32)> {
        let names: Vec<String> = self
            .due
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        names
            .into_iter()
            .filter_map(|name| {
                let (_, attempts) = self.due.remove(&name)?;
                Some((name, attempts))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_and_a_newer_version_supersedes_them() {
        let mut retries = Retries::default();
        assert_eq!(retries.next_due(), None);
        let start = Instant::now();
        retries.schedule("a".into(), 0);
        retries.schedule("b".into(), 3);
        assert_eq!(retries.next_due(), Some(start + RETRY_FIRST));
        assert!(retries.take_due(start).is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(retries.take_due(Instant::now()), vec![("a".to_string(), 0)]);
        assert_eq!(retries.next_due(), Some(start + Duration::from_secs(8)));
        retries.forget("b");
        assert_eq!(retries.next_due(), None);
        retries.schedule("c".into(), 40);
        assert_eq!(retries.next_due(), Some(Instant::now() + RETRY_MAX));
    }
}
