//! Connections whose client stops accepting response bytes are closed after `--write-timeout`.
//!
//! hyper has no write timeout of its own: a client that sends requests but never reads the
//! responses would keep its connection, hyper's buffers and the kernel's socket buffers for as
//! long as it likes. [`WriteTimeoutIo`] wraps a connection's I/O and fails a write that has
//! made no progress for the limit, which makes hyper drop the connection. Only a write that
//! waits on the client arms the timer, so a response the guest is slow to produce (a long poll,
//! a stream with pauses) is not affected, and a fast write costs nothing extra.

use hyper::rt::{Read, ReadBufCursor, Write};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A connection's I/O that fails writes stalled for longer than the write timeout.
pub struct WriteTimeoutIo<I> {
    inner: I,
    limit: Duration,
    peer: SocketAddr,
    /// Armed while a write waits for the client; disarmed by any progress.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> WriteTimeoutIo<I> {
    /// Wraps `inner`, the connection to `peer`, with the write timeout `limit`.
    pub fn new(inner: I, limit: Duration, peer: SocketAddr) -> Self {
        WriteTimeoutIo {
            inner,
            limit,
            peer,
            stall: None,
        }
    }

    /// Passes on the outcome of a write (or a flush that has to wait): progress disarms the
    /// timer, a wait arms it, and a wait past the limit becomes an error.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stall = None;
            return polled;
        }
        let limit = self.limit;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stall.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        tracing::info!(
            peer = %self.peer,
            write_timeout = ?limit,
            "the client accepted no response bytes within the write timeout; closing the connection"
        );
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client accepted no response bytes for {limit:?}"),
        )))
    }
}

impl<I: Read + Unpin> Read for WriteTimeoutIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: Write + Unpin> Write for WriteTimeoutIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        if polled.is_ready() {
            // A finished flush (a no-op on TCP) says nothing about whether the client took any
            // bytes: only a write's progress disarms the timer.
            return polled;
        }
        self.guard(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
