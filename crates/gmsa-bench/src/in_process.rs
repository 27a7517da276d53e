//! A server on a runtime of its own (two workers) in a thread of this process: the smoke
//! test's targets and the access-decision benchmark's webhook run beside their load this way,
//! without a child process. Stopped and joined on drop.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::{anyhow, Context};

/// Resolves when the server is asked to stop.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What serves the bound server until its shutdown resolves.
pub type Serving = Pin<Box<dyn Future<Output = ()>>>;

/// The thread a server runs in, and the signal that stops it.
pub struct InProcess {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    /// Runs `bind` on the new runtime and returns once it has bound (its address) or failed
    /// (its error); the server then serves until this is stopped or dropped.
    pub fn start<B, F>(bind: B) -> anyhow::Result<(SocketAddr, Self)>
    where
        B: FnOnce(Shutdown) -> F + Send + 'static,
        F: Future<Output = anyhow::Result<(SocketAddr, Serving)>>,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow!(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let shutdown: Shutdown = Box::pin(async move {
                    let _ = stopped.await;
                });
                match bind(shutdown).await {
                    Ok((addr, serving)) => {
                        let _ = ready_tx.send(Ok(addr));
                        serving.await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        });
        let addr = ready_rx.recv().context("server thread ended")??;
        let running = InProcess {
            stop: Some(stop),
            thread: Some(thread),
        };
        Ok((addr, running))
    }

    /// Asks the server to stop and waits for its thread.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
