//! The one watch driver: every cache and controller that follows a kind goes through
//! [`changes`], which runs kube's `watcher` with its default backoff and turns its events into
//! [`Change`]s, a list or re-list buffered here once rather than in each consumer.
//!
//! A stream of changes rather than an index trait the driver feeds: the consumers differ in
//! what they do between events (the keeper schedules its retries in the same `select!`), and
//! a stream leaves that loop to them, while each still only says what a complete list, one
//! applied object and one deleted object mean to it.

use std::fmt::Debug;

use futures::{future, Stream, StreamExt};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use serde::de::DeserializeOwned;

/// What the watch learnt about the cluster.
#[derive(Debug)]
pub enum Change<K> {
    /// A list or re-list began: kube announces it before asking, so it says nothing yet of
    /// whether the API server answers ([`Health::Unknown`]); what it holds comes in [`Listed`].
    /// The objects in between are not announced: with kube's default list-then-watch a
    /// failure during a list starts it over with this change.
    ///
    /// [`Listed`]: Change::Listed
    Listing,
    /// Every object there is, at once: replaces whatever the consumer held, so it never works
    /// from half a list, and drops what was deleted while the watch was away.
    Listed(Vec<K>),
    /// An object was added or modified.
    Applied(K),
    /// An object was deleted.
    Deleted(K),
    /// The list or watch failed; the driver retries with backoff, resuming the watch or
    /// listing again.
    Failed(watcher::Error),
}

/// What a change says of its watch, for the consumer's readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The list or watch failed.
    Failing,
    /// The API server answered: the watch follows the cluster again.
    Following,
    /// Nothing yet: kube announces a list before it asks for it. Counting that as recovery
    /// would restart the failure clock on every retry of a list that keeps failing, and a
    /// replica stuck re-listing would never turn stale.
    Unknown,
}

impl<K> Change<K> {
    /// What this change says of the watch.
    pub fn health(&self) -> Health {
        match self {
            Change::Failed(_) => Health::Failing,
            Change::Listing => Health::Unknown,
            Change::Listed(_) | Change::Applied(_) | Change::Deleted(_) => Health::Following,
        }
    }
}

/// Follows every object `api` reaches, until the stream is dropped; never ends by itself.
pub fn changes<K>(api: Api<K>) -> impl Stream<Item = Change<K>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    buffer_lists(watcher::watcher(api, watcher::Config::default()).default_backoff())
}

/// The changes `events` make, each list's objects held back until the list completes. A
/// failure in the middle of a list keeps what was listed so far: kube's default list-then-watch
/// starts the list over (with a new `Init`, which empties the buffer), while a streaming list
/// carries on after it.
pub fn buffer_lists<K, S>(events: S) -> impl Stream<Item = Change<K>>
where
    S: Stream<Item = watcher::Result<Event<K>>>,
{
    events
        .scan(Vec::new(), |listing, event| {
            future::ready(Some(change(listing, event)))
        })
        .filter_map(future::ready)
}

fn change<K>(listing: &mut Vec<K>, event: watcher::Result<Event<K>>) -> Option<Change<K>> {
    Some(match event {
        Ok(Event::Init) => {
            listing.clear();
            Change::Listing
        }
        Ok(Event::InitApply(object)) => {
            listing.push(object);
            return None;
        }
        Ok(Event::InitDone) => Change::Listed(std::mem::take(listing)),
        Ok(Event::Apply(object)) => Change::Applied(object),
        Ok(Event::Delete(object)) => Change::Deleted(object),
        Err(e) => Change::Failed(e),
    })
}

#[cfg(test)]
mod tests {
    use futures::stream;

    use super::*;

    /// Every change of `events`, flattened to what a test compares.
    async fn changes_of(events: Vec<watcher::Result<Event<&'static str>>>) -> Vec<String> {
        buffer_lists(stream::iter(events))
            .map(|change| match change {
                Change::Listing => "listing".to_string(),
                Change::Listed(objects) => format!("listed {objects:?}"),
                Change::Applied(object) => format!("applied {object}"),
                Change::Deleted(object) => format!("deleted {object}"),
                Change::Failed(_) => "failed".to_string(),
            })
            .collect()
            .await
    }

    fn failure() -> watcher::Error {
        watcher::Error::NoResourceVersion
    }

    #[tokio::test]
    async fn a_list_comes_whole_and_later_events_one_by_one() {
        let events = vec![
            Ok(Event::Init),
            Ok(Event::InitApply("a")),
            Ok(Event::InitApply("b")),
            Ok(Event::InitDone),
            Ok(Event::Apply("c")),
            Ok(Event::Delete("a")),
        ];
        assert_eq!(
            changes_of(events).await,
            ["listing", r#"listed ["a", "b"]"#, "applied c", "deleted a"]
        );
    }

    #[tokio::test]
    async fn a_list_started_over_after_a_failure_holds_only_the_new_list() {
        let events = vec![
            Ok(Event::Init),
            Ok(Event::InitApply("a")),
            Err(failure()),
            Ok(Event::Init),
            Ok(Event::InitApply("b")),
            Ok(Event::InitDone),
            Ok(Event::Apply("a")),
        ];
        assert_eq!(
            changes_of(events).await,
            [
                "listing",
                "failed",
                "listing",
                r#"listed ["b"]"#,
                "applied a"
            ]
        );
    }

    #[tokio::test]
    async fn a_list_that_carries_on_after_a_failure_keeps_what_came_before() {
        let events = vec![
            Ok(Event::Init),
            Ok(Event::InitApply("a")),
            Err(failure()),
            Ok(Event::InitApply("b")),
            Ok(Event::InitDone),
        ];
        assert_eq!(
            changes_of(events).await,
            ["listing", "failed", r#"listed ["a", "b"]"#]
        );
    }

    #[tokio::test]
    async fn an_empty_relist_after_a_broken_watch_lists_nothing() {
        let events = vec![
            Ok(Event::Init),
            Ok(Event::InitDone),
            Ok(Event::Apply("a")),
            Err(failure()),
            Ok(Event::Init),
            Ok(Event::InitDone),
        ];
        assert_eq!(
            changes_of(events).await,
            [
                "listing",
                "listed []",
                "applied a",
                "failed",
                "listing",
                "listed []"
            ]
        );
    }
}
