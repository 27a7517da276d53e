//! Reloading the serving certificate when its files change.
//!
//! Kubernetes Secret volumes rotate by atomically renaming a `..data` symlink
//! to a new timestamped directory; `tls.crt` itself is a symlink through
//! `..data` and never changes. An inotify watch on the file follows the old
//! target and goes quiet after the first rotation, so we watch the directories
//! that contain the paths and re-read on any change there. Polling backs this
//! up for file systems without change notifications (some network volumes,
//! exhausted inotify limits).

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify as Wakeup;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::CertStore;

/// How often the files are re-read when no change notification arrives.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// How the reloader notices changes.
#[derive(Debug, Clone)]
pub struct ReloaderOptions {
    /// Re-read the files this often regardless of notifications.
    pub poll_interval: Duration,
    /// Wait this long after a notification before reading, so the several
    /// events of one rotation lead to one reload of the finished state.
    pub debounce: Duration,
    /// Use file-system notifications; off means polling only.
    pub watch: bool,
}

impl Default for ReloaderOptions {
    fn default() -> Self {
        Self {
            poll_interval: DEFAULT_POLL_INTERVAL,
            debounce: Duration::from_millis(150),
            watch: true,
        }
    }
}

/// Keeps `store` up to date with its files until `shutdown` completes.
///
/// Must be called from within a tokio runtime.
pub fn spawn_reloader(
    store: Arc<CertStore>,
    poll_interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let options = ReloaderOptions {
        poll_interval,
        ..ReloaderOptions::default()
    };
    spawn_reloader_with(store, options, shutdown)
}

/// [`spawn_reloader`] with every knob exposed (tests turn notifications off
/// to prove the poll fallback on its own).
pub fn spawn_reloader_with(
    store: Arc<CertStore>,
    options: ReloaderOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    // The watch is in place before this function returns, and the first
    // check below covers anything that changed between load and watch.
    let wakeup = Arc::new(Wakeup::new());
    let watcher = if options.watch {
        watch_directories(&store, Arc::clone(&wakeup), options.poll_interval)
    } else {
        None
    };
    tokio::spawn(async move {
        // Dropping the watcher ends the watch, so it lives as long as the task.
        let _watcher = watcher;
        check(&store).await;
        // A zero period would panic in `interval`; treat it as "very often".
        let mut poll = tokio::time::interval(options.poll_interval.max(Duration::from_millis(10)));
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        poll.tick().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = wakeup.notified() => {
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(options.debounce) => {}
                    }
                    check(&store).await;
                }
                _ = poll.tick() => check(&store).await,
            }
        }
        tracing::debug!("certificate reloader stopped");
    })
}

async fn check(store: &Arc<CertStore>) {
    let store = Arc::clone(store);
    // Errors are counted and logged by the store; nothing more to do here.
    if let Err(err) = tokio::task::spawn_blocking(move || store.reload_if_changed()).await {
        tracing::warn!(error = %err, "certificate reload task failed");
    }
}

/// Starts watching the directories holding the certificate and key. Returns
/// `None` (and relies on polling) when notifications are unavailable.
fn watch_directories(
    store: &CertStore,
    wakeup: Arc<Wakeup>,
    poll_interval: Duration,
) -> Option<RecommendedWatcher> {
    let handler = move |result: notify::Result<Event>| match result {
        Ok(event) if is_change(&event.kind) => wakeup.notify_one(),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "certificate directory watch reported an error"),
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::warn!(error = %err, ?poll_interval, "cannot watch certificate files; polling only");
            return None;
        }
    };
    let dirs: BTreeSet<PathBuf> = [store.cert_path(), store.key_path()]
        .into_iter()
        .map(containing_dir)
        .collect();
    for dir in &dirs {
        if let Err(err) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %err, ?poll_interval, "cannot watch certificate directory; polling only");
            return None;
        }
    }
    tracing::debug!(?dirs, "watching certificate directories");
    Some(watcher)
}

/// Opening and reading files (including our own reloads) also raises events;
/// reacting to those would keep re-reading forever.
fn is_change(kind: &EventKind) -> bool {
    !matches!(
        kind,
        EventKind::Access(
            AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)
        )
    )
}

fn containing_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    #[test]
    fn reads_are_not_changes() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
    }

    #[test]
    fn bare_file_names_watch_the_working_directory() {
        assert_eq!(containing_dir(Path::new("tls.crt")), PathBuf::from("."));
        assert_eq!(
            containing_dir(Path::new("/certs/tls.crt")),
            PathBuf::from("/certs")
        );
    }
}
