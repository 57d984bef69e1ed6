//! Shadow traffic: on a route whose canary runs in shadow mode, a share of the requests is
//! copied to the candidate. The client is answered by the current generation alone; the
//! candidate's answer to the copy is compared with it (the status, and on a route whose
//! responses are deterministic, the SHA-256 of the body), counted, and dropped.
//!
//! A copy cannot act twice: its guest has no outbound network and writes key-value state to a
//! scratch space of the canary's own ([`crate::guest::bounds::Bounds::shadow`]). It runs under
//! the route's concurrency cap, only on a permit that leaves another free for clients, so
//! shadow load is the first to go when the route is busy; and only for a request whose whole
//! body (known length, at most the policy's `shadow_body_limit`) could be read before the
//! current generation ran.

use crate::engine::Runtime;
use crate::guest::body::{RequestBody, ResponseBody};
use crate::guest::canary::{Canary, Comparison, NotCopied, Role};
use crate::guest::respond::plain;
use crate::guest::run::{self, Admitted};
use crate::route::Route;
use crate::wasi::stdio::RequestTag;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;
use tokio::sync::oneshot;

/// A request's copy for the shadow candidate, ready to run once the current has answered.
pub struct Copy {
    canary: Arc<Canary>,
    request: Request<RequestBody>,
}

/// Prepares a request picked for a copy: the request for the current generation (its body read
/// into memory first, when it has one) and the copy, or no copy when the body is too large or
/// of unknown length; the refusal to send when the body could not be read.
pub async fn prepare(
    route: &Route,
    canary: &Arc<Canary>,
    req: Request<Incoming>,
) -> Result<(Request<RequestBody>, Option<Copy>), Response<ResponseBody>> {
    let limit = canary.policy.shadow_body_limit;
    let (parts, body) = req.into_parts();
    let bytes = if body.is_end_stream() {
        Bytes::new()
    } else {
        match body.size_hint().exact() {
            Some(len) if len <= limit => {
                let read = Limited::new(body, limit as usize).collect();
                match tokio::time::timeout(route.guests.limits.request_timeout, read).await {
                    Ok(Ok(collected)) => collected.to_bytes(),
                    _ => {
                        return Err(plain(
                            StatusCode::BAD_REQUEST,
                            "the request body could not be read\n",
                        ));
                    }
                }
            }
            _ => {
                not_copied(route, canary, NotCopied::Body);
                return Ok((
                    Request::from_parts(parts, RequestBody::Streaming(body)),
                    None,
                ));
            }
        }
    };
    let mut copy = Request::new(RequestBody::Copied(Some(bytes.clone())));
    *copy.method_mut() = parts.method.clone();
    *copy.uri_mut() = parts.uri.clone();
    *copy.version_mut() = parts.version;
    *copy.headers_mut() = parts.headers.clone();
    let current = Request::from_parts(parts, RequestBody::Copied(Some(bytes)));
    let copy = Copy {
        canary: canary.clone(),
        request: copy,
    };
    Ok((current, Some(copy)))
}

fn not_copied(route: &Route, canary: &Canary, why: NotCopied) {
    canary.not_copied(why);
    route.metrics.canary_shadow(why.as_str());
}

impl Copy {
    /// Starts the copy on the candidate, beside the current generation's `response` (the
    /// response to send: on a deterministic route, its body is hashed as it goes out). The copy
    /// is shed if fewer than two of the route's permits are free.
    pub fn start(
        self,
        runtime: &Arc<Runtime>,
        route: &Arc<Route>,
        tag: RequestTag,
        response: Response<ResponseBody>,
    ) -> Response<ResponseBody> {
        let permit = (route.permits.available_permits() >= 2)
            .then(|| route.permits.clone().try_acquire_owned().ok())
            .flatten();
        let Some(permit) = permit else {
            not_copied(route, &self.canary, NotCopied::Shed);
            return response;
        };
        let status = response.status().as_u16();
        // Only a deterministic route's bodies are compared, and so hashed.
        let (response, current_digest) = if self.canary.policy.deterministic {
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let (digest_tx, digest_rx) = oneshot::channel();
            let response =
                response.map(|body| Hashing::new(body, declared, digest_tx).boxed_unsync());
            (response, Some(digest_rx))
        } else {
            (response, None)
        };
        let candidate = self.canary.candidate();
        let admitted = Admitted::new(permit, &candidate, route.metrics.in_flight.clone());
        let shadow = Shadow {
            runtime: runtime.clone(),
            route: route.clone(),
            canary: self.canary,
            tag: RequestTag {
                role: Some("shadow"),
                ..tag
            },
        };
        tokio::spawn(shadow.run(admitted, self.request, (status, current_digest)));
        response
    }
}

/// A copy's run on the candidate.
struct Shadow {
    runtime: Arc<Runtime>,
    route: Arc<Route>,
    canary: Arc<Canary>,
    tag: RequestTag,
}

impl Shadow {
    /// Runs the copy, compares its answer with the current's `(status, body digest)` (the
    /// digest only on a deterministic route), counts and maybe logs the comparison, and records
    /// the candidate's request (an error if it answered 5xx, or differently on a deterministic
    /// route), which may decide the verdict.
    async fn run(
        self,
        admitted: Admitted,
        request: Request<RequestBody>,
        (current, current_digest): (u16, Option<oneshot::Receiver<[u8; 32]>>),
    ) {
        let route = &self.route;
        let deterministic = current_digest.is_some();
        let bounds = self.canary.shadow_bounds(&route.guests);
        let generation = admitted.generation().number;
        let started = Instant::now();
        let response = run::serve(
            &self.runtime,
            &bounds,
            admitted,
            (self.tag.clone(), None),
            started,
            request,
        )
        .await;
        let latency = started.elapsed();
        let status = response.status().as_u16();
        let deadline = tokio::time::Instant::from(started + route.guests.limits.request_timeout);
        let read =
            tokio::time::timeout_at(deadline, read_to_end(response.into_body(), deterministic))
                .await
                .ok()
                .flatten();
        let comparison = match (read, current_digest) {
            _ if status != current => Comparison::Status {
                current,
                candidate: status,
            },
            (None, _) => Comparison::Incomplete,
            (Some(_), None) => Comparison::Matched,
            (Some(ours), Some(theirs)) => match tokio::time::timeout_at(deadline, theirs).await {
                Ok(Ok(theirs)) if Some(theirs) == ours => Comparison::Matched,
                Ok(Ok(_)) => Comparison::Body { status },
                _ => Comparison::Incomplete,
            },
        };
        route.metrics.canary_shadow(comparison.as_str());
        if self.canary.compared(comparison) {
            let tag = &self.tag;
            tracing::warn!(
                route = %tag.route,
                request_id = tag.id,
                method = %tag.method,
                path = %tag.uri.path(),
                generation,
                current_status = current,
                candidate_status = status,
                mismatch = comparison.as_str(),
                "the shadow candidate answered differently from the current generation"
            );
        }
        let error = status >= 500 || (deterministic && comparison.mismatched());
        route
            .metrics
            .canary_request(Role::Candidate.as_str(), error);
        if let Some(verdict) = self.canary.record(Role::Candidate, error, latency) {
            route.slot.conclude(&self.canary, &verdict, &route.metrics);
        }
    }
}

/// Reads `body` to its end: `None` if it failed, else the SHA-256 of its data when `hash`.
async fn read_to_end(mut body: ResponseBody, hash: bool) -> Option<Option<[u8; 32]>> {
    let mut hasher = hash.then(Sha256::new);
    while let Some(frame) = body.frame().await {
        if let (Some(data), Some(hasher)) = (frame.ok()?.data_ref(), &mut hasher) {
            hasher.update(data);
        }
    }
    Some(hasher.map(|h| h.finalize().into()))
}

/// A response body that hashes its data as it goes out, and sends the digest when it ends: at
/// its end of stream, or once its length (its `Content-Length`, or else its exact size hint)
/// has gone out, since hyper stops polling a body of known length there; nothing if it fails
/// or is dropped first.
struct Hashing {
    inner: ResponseBody,
    hasher: Sha256,
    /// Bytes still to come, for a body of known length.
    remaining: Option<u64>,
    done: Option<oneshot::Sender<[u8; 32]>>,
}

impl Hashing {
    fn new(inner: ResponseBody, declared: Option<u64>, done: oneshot::Sender<[u8; 32]>) -> Self {
        let mut body = Hashing {
            remaining: declared.or(inner.size_hint().exact()),
            inner,
            hasher: Sha256::new(),
            done: Some(done),
        };
        if body.remaining == Some(0) {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(std::mem::take(&mut self.hasher).finalize().into());
        }
    }
}

impl Body for Hashing {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.hasher.update(data);
                    if let Some(remaining) = &mut this.remaining {
                        *remaining = remaining.saturating_sub(data.len() as u64);
                        if *remaining == 0 {
                            this.finish();
                        }
                    }
                }
            }
            Some(Err(_)) => this.done = None,
            None => this.finish(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        // Until the digest is out, the end must be polled for.
        self.done.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
