//! The I/O of one client connection: a write timeout, and responses sent in batches.
//!
//! **Write timeout.** hyper has no write timeout of its own: a client that sends requests but
//! never reads the responses would keep its connection, hyper's buffers and the kernel's socket
//! buffers for as long as it likes. [`ConnIo`] fails a write that has made no progress for
//! `--write-timeout`, which makes hyper drop the connection. Only a write that waits on the
//! client arms the timer, so a response the guest is slow to produce (a long poll, a stream with
//! pauses) is not affected, and a fast write costs nothing extra.
//!
//! **Batched responses.** When other requests are waiting, the first write after a read (a
//! response to the request just read) is not made at once: the connection's task yields once,
//! to the back of the runtime's run queue, so the other connections whose requests are waiting
//! run their guests first, and the responses then leave back to back. Every write into the
//! socket of a client that is idle, waiting for its response, makes the kernel wake the
//! client's thread; when that thread runs on the same machine (a sidecar proxy, a local load
//! balancer, a load generator) waking it costs the sender's CPU as much as a sixth of a small
//! request (an inter-processor interrupt, dearer still in a VM). Back-to-back writes find it
//! awake and wake it once per batch. The delay a response takes on is one turn of the run
//! queue. A connection only yields when another connection of the listener has become readable
//! and not read yet ([`WaitingReads`]): with nothing to batch with (one client, a quiet server)
//! the response is written at once. BENCHMARKS.md has the measurements (hello: about a third
//! less CPU per request at 32 connections).

use hyper::rt::{Read, ReadBufCursor, Write};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// How many connections of a listener have become readable and not read yet: requests waiting
/// for their turn on the runtime, which a response about to be written can be batched with.
/// Shared by the listener's connections; cheap to clone.
#[derive(Clone, Default)]
pub struct WaitingReads(Arc<AtomicUsize>);

impl WaitingReads {
    /// Connections counted right now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// The states of a connection's `read_state`: not counted, counted in [`WaitingReads`], gone.
const IDLE: u8 = 0;
const WAITING: u8 = 1;
const CLOSED: u8 = 2;

/// The waker a connection's socket is given when a read has to wait: it counts the connection
/// in [`WaitingReads`] when the socket becomes readable, then wakes the connection's task.
struct ReadWake {
    state: Arc<AtomicU8>,
    waiting: WaitingReads,
    task: Waker,
}

impl Wake for ReadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self
            .state
            .compare_exchange(IDLE, WAITING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.waiting.0.fetch_add(1, Ordering::Relaxed);
        }
        self.task.wake_by_ref();
    }
}

/// A connection's I/O: fails writes stalled for longer than the write timeout, and yields once
/// before the first write after each read while another connection waits to be read.
pub struct ConnIo<I> {
    inner: I,
    limit: Duration,
    peer: SocketAddr,
    /// Armed while a write waits for the client; disarmed by any progress.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Something was read since the last write: the next write may yield once first.
    read_since_write: bool,
    /// This connection's part in `waiting` (`IDLE`, `WAITING` or `CLOSED`).
    read_state: Arc<AtomicU8>,
    waiting: WaitingReads,
    /// The task's waker and the counting waker made for it, reused while the task's is the same.
    read_waker: Option<(Waker, Waker)>,
}

impl<I> ConnIo<I> {
    /// Wraps `inner`, the connection to `peer`, with the write timeout `limit`; `waiting` is
    /// shared by the listener's connections.
    pub fn new(inner: I, limit: Duration, peer: SocketAddr, waiting: WaitingReads) -> Self {
        ConnIo {
            inner,
            limit,
            peer,
            stall: None,
            read_since_write: false,
            read_state: Arc::new(AtomicU8::new(IDLE)),
            waiting,
            read_waker: None,
        }
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether this write should wait one turn of the run queue first (see the module docs); if
    /// so, the task has been woken to run again at the back of the queue.
    fn yield_before_write(&mut self, cx: &mut Context<'_>) -> bool {
        if !std::mem::take(&mut self.read_since_write) || self.waiting.get() == 0 {
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

impl<I> Drop for ConnIo<I> {
    fn drop(&mut self) {
        // Closed for good: a wake-up still on its way no longer counts the connection.
        if self.read_state.swap(CLOSED, Ordering::AcqRel) == WAITING {
            self.waiting.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<I: Read + Unpin> Read for ConnIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this
            .read_state
            .compare_exchange(WAITING, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            this.waiting.0.fetch_sub(1, Ordering::Relaxed);
        }
        let counting = match &this.read_waker {
            Some((task, counting)) if task.will_wake(cx.waker()) => counting,
            _ => {
                let counting = Waker::from(Arc::new(ReadWake {
                    state: this.read_state.clone(),
                    waiting: this.waiting.clone(),
                    task: cx.waker().clone(),
                }));
                &this.read_waker.insert((cx.waker().clone(), counting)).1
            }
        };
        let polled = Pin::new(&mut this.inner).poll_read(&mut Context::from_waker(counting), buf);
        if matches!(polled, Poll::Ready(Ok(()))) {
            this.read_since_write = true;
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

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

    fn counting_waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    fn conn(waiting: &WaitingReads) -> (ConnIo<TokioIo<DuplexStream>>, DuplexStream) {
        let (ours, client) = tokio::io::duplex(1024);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let io = ConnIo::new(
            TokioIo::new(ours),
            Duration::from_secs(5),
            addr,
            waiting.clone(),
        );
        (io, client)
    }

    fn poll_read(io: &mut ConnIo<TokioIo<DuplexStream>>, cx: &mut Context<'_>) -> Poll<()> {
        let mut bytes = [0u8; 64];
        let mut buf = hyper::rt::ReadBuf::new(&mut bytes[..]);
        Pin::new(&mut *io)
            .poll_read(cx, buf.unfilled())
            .map(|r| r.unwrap())
    }

    #[tokio::test]
    async fn a_connection_is_counted_from_readable_until_it_reads_or_closes() {
        let waiting = WaitingReads::default();
        let (mut io, mut client) = conn(&waiting);
        let (woken, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);

        assert!(poll_read(&mut io, &mut cx).is_pending());
        assert_eq!(waiting.get(), 0, "an idle connection is not counted");
        client.write_all(b"GET").await.unwrap();
        assert_eq!(woken.0.load(Ordering::Relaxed), 1, "the task is woken");
        assert_eq!(waiting.get(), 1, "readable, not read yet");
        assert!(poll_read(&mut io, &mut cx).is_ready());
        assert_eq!(waiting.get(), 0, "read");

        // A connection that goes away while counted stops counting, and a late wake-up does not
        // count it again.
        assert!(poll_read(&mut io, &mut cx).is_pending());
        client.write_all(b"GET").await.unwrap();
        assert_eq!(waiting.get(), 1);
        drop(io);
        assert_eq!(waiting.get(), 0);
        drop(client);
        assert_eq!(waiting.get(), 0);
    }

    #[tokio::test]
    async fn a_response_waits_one_turn_only_while_another_connection_waits() {
        let waiting = WaitingReads::default();
        let (mut io, mut client) = conn(&waiting);
        let (mut other, mut other_client) = conn(&waiting);
        let (woken, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);

        // No read yet (a server speaking first): the write goes out at once.
        let polled = Pin::new(&mut io).poll_write(&mut cx, b"a");
        assert!(matches!(polled, Poll::Ready(Ok(1))), "{polled:?}");

        // A request, and nobody else waiting: the response goes out at once too.
        client.write_all(b"GET").await.unwrap();
        assert!(poll_read(&mut io, &mut cx).is_ready());
        let polled = Pin::new(&mut io).poll_write(&mut cx, b"b");
        assert!(matches!(polled, Poll::Ready(Ok(1))), "{polled:?}");

        // The other connection becomes readable: the next response waits one turn, with its
        // task woken to come back…
        assert!(poll_read(&mut other, &mut cx).is_pending());
        other_client.write_all(b"GET").await.unwrap();
        assert_eq!(waiting.get(), 1);
        let before = woken.0.load(Ordering::Relaxed);
        client.write_all(b"GET").await.unwrap();
        assert!(poll_read(&mut io, &mut cx).is_ready());
        let slices = [io::IoSlice::new(b"c")];
        assert!(
            Pin::new(&mut io)
                .poll_write_vectored(&mut cx, &slices)
                .is_pending()
        );
        assert_eq!(woken.0.load(Ordering::Relaxed), before + 1);
        // …and then goes through, as do the writes after it.
        for polled in [
            Pin::new(&mut io).poll_write_vectored(&mut cx, &slices),
            Pin::new(&mut io).poll_write(&mut cx, b"d"),
        ] {
            assert!(matches!(polled, Poll::Ready(Ok(1))), "{polled:?}");
        }
        assert_eq!(woken.0.load(Ordering::Relaxed), before + 1);

        drop(io);
        let mut received = String::new();
        client.read_to_string(&mut received).await.unwrap();
        assert_eq!(received, "abcd", "every byte arrives, in order");
    }
}
