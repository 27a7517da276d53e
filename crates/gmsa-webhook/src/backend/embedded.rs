//! The embedded state backend: manifests in a directory are the cluster, RBAC is evaluated in
//! process, and the directory is reloaded when its files change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use gmsa_core::state::{State, StateError};
use gmsa_core::{Facts, Needs};
use notify::Watcher;
use tokio::sync::mpsc;

/// The manifests of a directory, swapped whole on reload.
pub struct EmbeddedState {
    dir: PathBuf,
    state: ArcSwap<State>,
}

impl EmbeddedState {
    /// Loads the directory; a broken manifest at start is an error the operator must fix.
    pub fn load(dir: &Path) -> Result<Arc<Self>, StateError> {
        let state = State::load_dir(dir)?;
        log_loaded(dir, &state);
        Ok(Arc::new(Self {
            dir: dir.to_path_buf(),
            state: ArcSwap::from_pointee(state),
        }))
    }

    /// The directory the state comes from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current state.
    pub fn current(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// Answers a review's needs from the current state.
    pub fn gather(&self, needs: &Needs) -> Facts {
        Facts::gather(needs, &**self.state.load())
    }

    /// Re-reads the directory; a broken manifest keeps the previous state and is logged.
    pub fn reload(&self) -> bool {
        match State::load_dir(&self.dir) {
            Ok(state) => {
                log_loaded(&self.dir, &state);
                self.state.store(Arc::new(state));
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "state directory not reloaded; keeping the previous state");
                false
            }
        }
    }

    /// Reloads on change: a directory watch, and a poll of file times as a fallback.
    pub fn spawn_reloader(self: &Arc<Self>, poll: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let (tx, mut rx) = mpsc::channel::<()>(1);
            let watcher =
                notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
                    let _ = tx.try_send(());
                })
                .and_then(|mut w| {
                    w.watch(&this.dir, notify::RecursiveMode::NonRecursive)
                        .map(|_| w)
                });
            if let Err(e) = &watcher {
                tracing::warn!(error = %e, "cannot watch the state directory; polling only");
            }
            let mut seen = fingerprint(&this.dir);
            let mut ticker = tokio::time::interval(poll);
            loop {
                tokio::select! {
                    Some(()) = rx.recv() => {
                        // Let a burst of writes settle.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        while rx.try_recv().is_ok() {}
                    }
                    _ = ticker.tick() => {}
                }
                let now = fingerprint(&this.dir);
                if now != seen {
                    seen = now;
                    this.reload();
                }
            }
        })
    }
}

fn log_loaded(dir: &Path, state: &State) {
    tracing::info!(
        dir = %dir.display(),
        credential_specs = state.specs().count(),
        rbac_objects = state.rbac().len(),
        "state loaded"
    );
    for skipped in state.skipped() {
        tracing::debug!(object = %skipped, "manifest ignored: not a credential spec or RBAC object");
    }
}

/// Names, sizes and modification times of the directory's entries (following symlinks).
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            let meta = std::fs::metadata(&path).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (path, len, modified)
        })
        .collect();
    out.sort();
    out
}
