//! Request and response body wrappers that enforce limits and make guest failures visible to
//! the client.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use wasmtime_wasi_http::Error as HttpError;

/// The body type of every response the host sends.
pub type ResponseBody = UnsyncBoxBody<Bytes, HttpError>;

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A request's body as its guest reads it: the client's stream, or a copy held in memory (the
/// requests of a shadow canary, which the current generation and the candidate both read).
pub enum RequestBody {
    /// The client's body, read as it arrives.
    Streaming(hyper::body::Incoming),
    /// The whole body, read before the guest ran (`None` once handed over, or if empty).
    Copied(Option<Bytes>),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut *self {
            RequestBody::Streaming(incoming) => Pin::new(incoming).poll_frame(cx),
            RequestBody::Copied(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streaming(incoming) => incoming.is_end_stream(),
            RequestBody::Copied(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streaming(incoming) => incoming.size_hint(),
            RequestBody::Copied(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// A request body that fails once more than `limit` bytes have arrived, and records that it
/// did so the host can answer 413.
pub struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl<B> LimitedBody<B> {
    /// Wraps `inner`; `exceeded` is set when the limit is crossed.
    pub fn new(inner: B, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        LimitedBody {
            inner,
            remaining: limit,
            limit,
            exceeded,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<HttpError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.exceeded.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(
                            this.limit,
                        )))));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(err)) => Poll::Ready(Some(Err(err.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A guest's run, polled by the request handler on the connection's task until the guest has
/// set its response head; a run still going then is detached to a task of its own
/// (`GuestRun::detach`, [`GuardedBody`]). It resolves to `Ok` if the guest finished without
/// error, else to what went wrong.
///
/// Dropped before it has finished (the client went away, the guest answered with an error code
/// and went on), it is not cut short: the rest of the run moves to a task of its own, so the
/// guest still ends as it would have, within its deadline, and its failures are still logged.
/// Nobody waits for it any more, so its task is handed to `abandoned` (its route's list of
/// such guests, which may stop it when a request needs its slot).
pub struct GuestRun<E: Send + 'static> {
    run: Option<BoxedRun<E>>,
    abandoned: Option<Abandoned>,
}

/// The guest's future, boxed so that the handler can hold it by name.
type BoxedRun<E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send>>;

/// What to do with a guest's task once nobody waits for it: given the task to stop it by.
pub type Abandoned = Box<dyn FnOnce(tokio::task::AbortHandle) + Send>;

impl<E: Send + 'static> GuestRun<E> {
    /// Wraps the guest's future, counting the time its polls take (the guest's run time, by
    /// which its slices are cut: [`crate::engine::slices::timed`]); `abandoned` gets its task if its
    /// client goes away before it ends.
    pub fn new(
        run: impl Future<Output = Result<(), E>> + Send + 'static,
        abandoned: Abandoned,
    ) -> Self {
        GuestRun {
            run: Some(Box::pin(crate::engine::slices::timed(run))),
            abandoned: Some(abandoned),
        }
    }

    /// Moves the rest of the run to a task of its own and returns a handle on its outcome, and
    /// what to do with the task if its client goes away. The run then keeps going, and meets
    /// its deadline, whether or not anybody polls the handle.
    fn detach(mut self) -> (tokio::task::JoinHandle<Result<(), E>>, Option<Abandoned>) {
        let run = self
            .run
            .take()
            .expect("a guest run is not detached after it ended");
        (tokio::spawn(run), self.abandoned.take())
    }
}

impl<E: Send + 'static> Future for GuestRun<E> {
    type Output = Result<(), E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let run = self
            .run
            .as_mut()
            .expect("a guest run is not polled after it ended");
        let outcome = ready!(run.as_mut().poll(cx));
        self.run = None;
        Poll::Ready(outcome)
    }
}

impl<E: Send + 'static> Drop for GuestRun<E> {
    fn drop(&mut self) {
        let Some(run) = self.run.take() else { return };
        // Without a runtime (it is shutting down) the guest is dropped, which stops it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let task = runtime.spawn(run);
            if let Some(abandoned) = self.abandoned.take() {
                abandoned(task.abort_handle());
            }
        }
    }
}

/// Where the guest behind a response body stands.
enum Guest<E: Send + 'static> {
    /// Still running on a task of its own (and what to do with it if the body is dropped first).
    Running(tokio::task::JoinHandle<Result<(), E>>, Option<Abandoned>),
    /// Finished, cleanly or not.
    Finished(bool),
}

/// A guest's response body that ends cleanly only if the guest finished cleanly.
///
/// A guest that is still running once it has set its response head (it streams its body, or
/// does more work after it) goes on on a task of its own (`GuestRun::detach`). It must not be
/// polled only from the body: a client that stops reading makes hyper stop polling the body,
/// and the guest would then hold its instance and concurrency slot past its deadline for as
/// long as the client keeps the connection open. A guest that ended before its head was
/// returned (a small response) costs no task at all.
///
/// wasi:http ends a response body without error when the guest's store goes away, even if the
/// guest trapped or ran out of time half way through writing it. That would hand the client a
/// truncated body that looks complete; instead the body ends only after the guest has, and a
/// failed guest turns the end into a body error, so the connection is cut.
pub struct GuardedBody<E: Send + 'static> {
    inner: ResponseBody,
    guest: Guest<E>,
}

impl<E: Send + 'static> GuardedBody<E> {
    /// Wraps `inner`, fed by the guest run `guest`, which goes on on a task of its own.
    pub fn running(inner: ResponseBody, guest: GuestRun<E>) -> Self {
        let (task, abandoned) = guest.detach();
        GuardedBody {
            inner,
            guest: Guest::Running(task, abandoned),
        }
    }

    /// Wraps `inner`, fed by a guest run that has already ended (`ok` if it ended cleanly).
    pub fn finished(inner: ResponseBody, ok: bool) -> Self {
        GuardedBody {
            inner,
            guest: Guest::Finished(ok),
        }
    }
}

impl<E: Send + 'static> Body for GuardedBody<E> {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(frame) => Poll::Ready(Some(frame)),
            None => {
                if let Guest::Running(task, _) = &mut this.guest {
                    // The body ended; wait for the guest to end too (it wakes us when it does).
                    // A task that panicked or was cancelled counts as a failed run.
                    let outcome = ready!(Pin::new(task).poll(cx));
                    this.guest = Guest::Finished(matches!(outcome, Ok(Ok(()))));
                }
                match this.guest {
                    Guest::Finished(false) => {
                        // Report the failure once; a later poll sees a plain end.
                        this.guest = Guest::Finished(true);
                        Poll::Ready(Some(Err(HttpError::HttpResponseIncomplete)))
                    }
                    _ => Poll::Ready(None),
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<E: Send + 'static> Drop for GuardedBody<E> {
    fn drop(&mut self) {
        // The client went away (or stopped reading) while the guest still ran: nobody waits
        // for it now.
        if let Guest::Running(task, abandoned) = &mut self.guest
            && !task.is_finished()
            && let Some(abandoned) = abandoned.take()
        {
            abandoned(task.abort_handle());
        }
    }
}

/// A response body that holds `G` until it is dropped: a request's concurrency permit and
/// generation, when its body streams from a reused instance's task rather than its own.
pub struct HeldBody<G> {
    inner: ResponseBody,
    _held: G,
}

impl<G> HeldBody<G> {
    /// Wraps `inner`, holding `held` as long as it lives.
    pub fn new(inner: ResponseBody, held: G) -> Self {
        HeldBody { inner, _held: held }
    }
}

impl<G: Unpin> Body for HeldBody<G> {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
