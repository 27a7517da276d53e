//! Simulated network loss: while the server is unreachable, new connections are dropped on
//! accept and open ones fail their next read or write. Clients then see transport errors, as
//! with a dead apiserver, rather than HTTP answers (which kube-rs would retry).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Accepts connections only while the server is reachable.
pub(crate) struct GatedListener {
    inner: TcpListener,
    unreachable: Arc<AtomicBool>,
}

impl GatedListener {
    pub fn new(inner: TcpListener, unreachable: Arc<AtomicBool>) -> Self {
        Self { inner, unreachable }
    }
}

impl Listener for GatedListener {
    type Io = GatedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = Listener::accept(&mut self.inner).await;
            if self.unreachable.load(Ordering::SeqCst) {
                drop(stream);
                continue;
            }
            let gated = GatedStream {
                inner: stream,
                unreachable: self.unreachable.clone(),
            };
            return (gated, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that breaks once the server becomes unreachable.
pub(crate) struct GatedStream {
    inner: TcpStream,
    unreachable: Arc<AtomicBool>,
}

impl GatedStream {
    fn cut(&self) -> Option<io::Error> {
        self.unreachable.load(Ordering::SeqCst).then(|| {
            io::Error::new(
                io::ErrorKind::ConnectionReset,
                "fake API server is unreachable",
            )
        })
    }
}

impl AsyncRead for GatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.cut() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.cut() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
