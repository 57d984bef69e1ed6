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
use tokio::sync::oneshot;
use wasmtime_wasi_http::Error as HttpError;

/// The body type of every response the host sends.
pub type ResponseBody = UnsyncBoxBody<Bytes, HttpError>;

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
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

/// A guest's response body that ends cleanly only if the guest finished cleanly.
///
/// wasi:http ends a response body without error when the guest's store goes away, even if the
/// guest trapped or ran out of time half way through writing it. That would hand the client a
/// truncated body that looks complete; instead this wrapper waits for the guest's verdict at
/// the end of the body and turns a failure into a body error, so the connection is cut.
pub struct GuardedBody {
    inner: ResponseBody,
    guest_ok: Option<oneshot::Receiver<bool>>,
}

impl GuardedBody {
    /// Wraps `inner`; `guest_ok` receives whether the guest finished without error.
    pub fn new(inner: ResponseBody, guest_ok: oneshot::Receiver<bool>) -> Self {
        GuardedBody {
            inner,
            guest_ok: Some(guest_ok),
        }
    }
}

impl Body for GuardedBody {
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
                let Some(rx) = this.guest_ok.as_mut() else {
                    return Poll::Ready(None);
                };
                let ok = ready!(Pin::new(rx).poll(cx)).unwrap_or(false);
                this.guest_ok = None;
                if ok {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(HttpError::HttpResponseIncomplete)))
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
