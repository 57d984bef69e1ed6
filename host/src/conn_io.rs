//! The I/O of one client connection: a write timeout, and responses sent in batches.
//!
//! **Write timeout.** hyper has no write timeout of its own: a client that sends requests but
//! never reads the responses would keep its connection, hyper's buffers and the kernel's socket
//! buffers for as long as it likes. [`ConnIo`] fails a write that has made no progress for
//! `--write-timeout`, which makes hyper drop the connection. Only a write that waits on the
//! client arms the timer, so a response the guest is slow to produce (a long poll, a stream with
//! pauses) is not affected, and a fast write costs nothing extra.
//!
//! **Batched responses.** The first write after a read (a response to the request just read)
//! is not made at once: the connection's task yields once, to the back of the runtime's run
//! queue, so the other connections whose requests are already waiting run their guests first,
//! and the responses then leave back to back. Every write into the socket of a client that is
//! idle, waiting for its response, makes the kernel wake the client's thread; when that thread
//! runs on the same machine (a sidecar proxy, a local load balancer, a load generator) waking it
//! costs the sender's CPU as much as a sixth of a small request (an inter-processor interrupt,
//! dearer still in a VM). Back-to-back writes find it awake and wake it once per batch. The
//! delay a response takes on is one turn of the run queue, which holds only requests that are
//! ready: an idle server writes at once. BENCHMARKS.md has the measurements (hello: about a
//! third less CPU per request at 32 connections, no change at one).

use hyper::rt::{Read, ReadBufCursor, Write};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A connection's I/O: fails writes stalled for longer than the write timeout, and yields once
/// before the first write after each read.
pub struct ConnIo<I> {
    inner: I,
    limit: Duration,
    peer: SocketAddr,
    /// Armed while a write waits for the client; disarmed by any progress.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Something was read since the last write: the next write yields once first.
    read_since_write: bool,
}

impl<I> ConnIo<I> {
    /// Wraps `inner`, the connection to `peer`, with the write timeout `limit`.
    pub fn new(inner: I, limit: Duration, peer: SocketAddr) -> Self {
        ConnIo {
            inner,
            limit,
            peer,
            stall: None,
            read_since_write: false,
        }
    }

    /// Whether this write should wait one turn of the run queue first (see the module docs); if
    /// so, the task has been woken to run again at the back of the queue.
    fn yield_before_write(&mut self, cx: &mut Context<'_>) -> bool {
        if !std::mem::take(&mut self.read_since_write) {
            return false;
        }
        // Woken from inside its own poll, a tokio task goes to the back of the run queue (not
        // the LIFO slot a wake from elsewhere would use).
        cx.waker().wake_by_ref();
        true
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

impl<I: Read + Unpin> Read for ConnIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) {
            self.read_since_write = true;
        }
        polled
    }
}

impl<I: Write + Unpin> Write for ConnIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.yield_before_write(cx) {
            return Poll::Pending;
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.yield_before_write(cx) {
            return Poll::Pending;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts its wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn read_some(io: &mut ConnIo<TokioIo<tokio::io::DuplexStream>>, cx: &mut Context<'_>) {
        let mut bytes = [0u8; 64];
        let mut buf = hyper::rt::ReadBuf::new(&mut bytes[..]);
        let polled = Pin::new(&mut *io).poll_read(cx, buf.unfilled());
        assert!(matches!(polled, Poll::Ready(Ok(()))), "{polled:?}");
    }

    #[tokio::test]
    async fn the_first_write_after_a_read_yields_once_and_later_ones_go_at_once() {
        let (ours, mut client) = tokio::io::duplex(1024);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut io = ConnIo::new(TokioIo::new(ours), Duration::from_secs(5), addr);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);

        // No read yet (a server speaking first): the write goes out at once.
        let polled = Pin::new(&mut io).poll_write(&mut cx, b"a");
        assert!(matches!(polled, Poll::Ready(Ok(1))), "{polled:?}");

        client.write_all(b"GET").await.unwrap();
        read_some(&mut io, &mut cx);
        // The response's first write waits one turn, with the task woken to come back…
        let polled = Pin::new(&mut io).poll_write(&mut cx, b"b");
        assert!(polled.is_pending(), "{polled:?}");
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        // …and then goes through, as do the writes after it.
        let slices = [io::IoSlice::new(b"c")];
        for polled in [
            Pin::new(&mut io).poll_write(&mut cx, b"b"),
            Pin::new(&mut io).poll_write_vectored(&mut cx, &slices),
        ] {
            assert!(matches!(polled, Poll::Ready(Ok(1))), "{polled:?}");
        }
        assert_eq!(count.0.load(Ordering::Relaxed), 1);

        // Another request, another single yield (vectored writes too).
        client.write_all(b"GET").await.unwrap();
        read_some(&mut io, &mut cx);
        assert!(
            Pin::new(&mut io)
                .poll_write_vectored(&mut cx, &slices)
                .is_pending()
        );
        assert!(matches!(
            Pin::new(&mut io).poll_write_vectored(&mut cx, &slices),
            Poll::Ready(Ok(1))
        ));
        assert_eq!(count.0.load(Ordering::Relaxed), 2);

        drop(io);
        let mut received = String::new();
        client.read_to_string(&mut received).await.unwrap();
        assert_eq!(received, "abcc", "every byte arrives, in order");
    }
}
