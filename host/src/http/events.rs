//! The dev-mode event stream on the public listener (`--events-path`): the [`crate::events`]
//! bus as server-sent events (`text/event-stream`), `?route=NAME` for one route's alone.
//!
//! Each subscriber gets a task of its own that moves messages from its subscription into a
//! small bounded channel the response body reads, and writes a heartbeat comment every
//! [`HEARTBEAT`] so that a proxy or a browser keeps an idle stream open (and a client that has
//! gone is noticed). A client that reads too slowly blocks only its own task: the bus resyncs
//! it with a snapshot once it has fallen behind, and the listener's write timeout closes a
//! client that reads nothing at all. Beyond the cap on subscribers the answer is 503.

use crate::events::{Events, Subscription};
use crate::guest::body::ResponseBody;
use crate::guest::respond::{plain, retry_shortly};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// Time between two heartbeat comments on an idle stream.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// How long a browser waits before it reconnects to a stream that ended (a restarted host).
const RETRY_MS: u64 = 1000;

/// Messages written ahead of a slow client at most.
const AHEAD: usize = 8;

/// The stream at its path: the bus, and where it is served.
pub struct EventStream {
    /// The path it is served at.
    pub path: String,
    /// The bus.
    pub events: Arc<Events>,
}

impl EventStream {
    /// The response to a request for the stream.
    pub fn serve<B>(&self, req: &Request<B>) -> Response<ResponseBody> {
        if req.method() != Method::GET {
            let mut refusal = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "the event stream answers GET only\n",
            );
            refusal
                .headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET"));
            return refusal;
        }
        let route = req.uri().query().and_then(query_route);
        let Some(subscription) = self.events.subscribe(route) else {
            tracing::warn!(
                max = crate::events::MAX_SUBSCRIBERS,
                "event stream: too many subscribers; answering 503"
            );
            return retry_shortly("the event stream has as many subscribers as it serves\n");
        };
        let (sender, receiver) = mpsc::channel(AHEAD);
        tokio::spawn(forward(subscription, sender));
        let mut response = Response::new(
            ChannelBody {
                receiver,
                first: Some(Bytes::from(format!("retry: {RETRY_MS}\n\n"))),
            }
            .boxed_unsync(),
        );
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

/// The `route` parameter of a query string (route names need no decoding).
fn query_route(query: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "route")
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}

/// Moves `subscription`'s messages into `sender`, with a heartbeat in between, until the bus
/// closes or the client goes.
async fn forward(mut subscription: Subscription, sender: mpsc::Sender<Bytes>) {
    let start = tokio::time::Instant::now() + HEARTBEAT;
    let mut heartbeat = tokio::time::interval_at(start, HEARTBEAT);
    loop {
        let bytes = tokio::select! {
            () = sender.closed() => return,
            _ = heartbeat.tick() => Bytes::from_static(b": heartbeat\n\n"),
            message = subscription.next() => match message {
                Some(message) => Bytes::from(message.sse()),
                None => return,
            },
        };
        tokio::select! {
            sent = sender.send(bytes) => if sent.is_err() { return },
            () = subscription.closed() => return,
        }
    }
}

/// A body that ends when its channel's sender is gone.
struct ChannelBody {
    receiver: mpsc::Receiver<Bytes>,
    first: Option<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        self.receiver
            .poll_recv(cx)
            .map(|bytes| bytes.map(|b| Ok(Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_parameter_is_read_from_the_query() {
        assert_eq!(query_route("route=api"), Some("api".into()));
        assert_eq!(query_route("x=1&route=index"), Some("index".into()));
        assert_eq!(query_route("route="), None);
        assert_eq!(query_route("x=1"), None);
    }
}
